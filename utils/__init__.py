"""Helpers for the book "A U-Net for pneumothorax segmentation".

Each module holds one thing: ``config`` (quick/full run mode), ``environment`` (supported versions and the
guarded install that the set-up cells run in Colab), ``rle`` (the competition's run-length encoding),
``dicom`` (reading radiographs), ``sample`` (the bundled synthetic data set), ``data`` (index, split and
``tf.data`` pipeline), ``kaggle_download`` (where the data is, and the Kaggle download), ``model`` (U-Net
blocks and presets), ``losses`` (losses and metrics), ``train`` (training runs), ``evaluate`` (prediction,
post-processing, submission), ``distributed`` (multi-worker training) and ``tuning`` (KerasTuner search).

Importing ``utils`` has no side effects: no seeding, no downloads, no TensorFlow set-up.
"""
