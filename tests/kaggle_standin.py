"""IPython start-up file for the Kaggle run of `make test-colab`: records which data the chapter read.

Kaggle needs no stand-in module (its kernels are told apart by the variable KAGGLE_KERNEL_RUN_TYPE, which the
Makefile sets). After every cell this writes the chapter's ``description`` (from ``root, description =
data_root()``) to ``$UNET_BOOK_DATA_REPORT``, so that the Makefile can check that the data attached under the
stand-in /kaggle/input was found with no setting, rather than the bundled sample.
"""
import os
from pathlib import Path


def _record_the_data_read(result):
    description = get_ipython().user_ns.get("description")  # noqa: F821 (IPython's own global)
    if isinstance(description, str):
        Path(os.environ["UNET_BOOK_DATA_REPORT"]).write_text(description + "\n")


get_ipython().events.register("post_run_cell", _record_the_data_read)  # noqa: F821
