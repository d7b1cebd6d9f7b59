"""Helpers for the book "A U-Net for pneumothorax segmentation".

Each module holds one thing:

- ``config``: the run mode (quick or full) and its sizes;
- ``environment``: the versions the book supports, and the guarded install that the set-up cells run in Colab;
- ``source``: where the data comes from (the real data in ``$SIIM_DATA_DIR``, else the bundled sample);
- ``kaggle_download``: Kaggle credentials and the download;
- ``sample``: the bundled synthetic data set (drawn to the real data's statistics), created on first use;
- ``rle``: the competition's run-length encoding;
- ``dicom``: reading radiographs and their headers;
- ``data``: index, patient-grouped split and the ``tf.data`` pipeline;
- ``model``: U-Net blocks, presets and ``build_unet``;
- ``diagram``: the picture of the whole U, read from a model that ``build_unet`` built;
- ``metrics``: the one per-image Dice, the competition score and the other metrics;
- ``losses``: the losses, built on the same Dice, and the paper's weight map;
- ``train``: device set-up, callbacks, hyperparameter files and training runs (also ``python -m utils.train``);
- ``evaluate``: prediction (also overlap-tile), post-processing (component areas, the winner's triplet), and
  the submission file;
- ``distributed``: multi-worker training with a custom loop, and local worker processes;
- ``tuning``: the KerasTuner hypermodel, search space and grid search;
- ``results``: the benchmarks' result files as the chapters read them, refused when made on another sample;
- ``setup_check``: the learners' set-up check, a pass/fail table (``python -m utils.setup_check``).

Importing ``utils`` has no side effects: no seeding, no downloads, no TensorFlow set-up.
"""
