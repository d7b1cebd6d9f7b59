"""Helpers for the book "A U-Net for pneumothorax segmentation".

Each module holds one thing: ``config`` (quick/full run mode), ``rle`` (the competition's
run-length encoding), ``dicom`` (reading radiographs), ``sample`` (the bundled synthetic data set),
``data`` (index, split and ``tf.data`` pipeline), ``kaggle_download`` and ``model`` (U-Net blocks).

Importing ``utils`` has no side effects: no seeding, no downloads, no TensorFlow set-up.
"""
