"""Downloading the SIIM-ACR data with kagglehub (``utils.source`` decides which folder the chapters read).

kagglehub, preinstalled in Colab and on Kaggle, finds the credentials itself (``kagglehub.login()``, the
variable ``KAGGLE_API_TOKEN``, ``~/.kaggle/access_token``, Colab's secret ``KAGGLE_API_TOKEN``, a legacy
``kaggle.json``), and inside a Kaggle notebook it is logged in already. There, attach the data instead of
downloading it: ``utils.source.data_root`` finds it under ``/kaggle/input``.

The data comes from a mirror of the competition's training files: the competition's own download holds the
stage-2 *test* images only (``stage_2_images/ID_*.dcm``) beside ``stage_2_train.csv``, the labels of the 12,047
stage-1 training and test images, so it yields no training image. ``MIRRORS`` names two mirrors and what they
hold; ``download`` tries them in order, so a mirror that is gone (a 404) falls back to the next.

The download marks its destination (see ``utils.source``): ``DOWNLOAD_STARTED`` before it starts, and
``DOWNLOAD_COMPLETE`` only after kagglehub has downloaded and unpacked the files. A download stopped on the way
(an interrupted kernel, a lost connection) leaves the first marker alone, so the folder does not count as data
until the download is run again and finishes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from utils.source import DOWNLOAD_COMPLETE, DOWNLOAD_STARTED, holds_data_files, interrupted_download, is_complete

# Kaggle handle: what it holds. Both are the competition's first release (stage 1), in the same file layout.
MIRRORS = {
    "seesee/siim-train-test": "siim/dicom-images-train (10,712 DICOM files), siim/dicom-images-test (1,377 "
                              "unlabelled), siim/train-rle.csv (the stage-1 masks); about 2 GB",
    "jesperdramsch/siim-acr-pneumothorax-segmentation-data": "the same release under pneumothorax/ "
                                                             "(dicom-images-train, dicom-images-test, "
                                                             "train-rle.csv)",
}
DATASET = next(iter(MIRRORS))  # the first choice
CREDENTIAL_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")

HOW_TO_GET_CREDENTIALS = """\
If Kaggle asks for credentials (HTTP 401 or 403), give kagglehub a token in one of these ways:
  - call kagglehub.login() in the notebook, or put an API token from https://www.kaggle.com/settings/api in
    the environment variable KAGGLE_API_TOKEN, or in the file ~/.kaggle/access_token;
  - in Colab: add KAGGLE_API_TOKEN under Secrets (the key icon) and let the notebook read it;
  - a legacy kaggle.json (username and key) in ~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY.
A 403 can also mean that the dataset's rules have not been accepted on its Kaggle page yet."""


def kaggle_config_dir() -> Path:
    """Where the Kaggle API looks for kaggle.json and access_token: ``$KAGGLE_CONFIG_DIR`` or ~/.kaggle."""
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")


def colab_secrets_to_environment() -> list[str]:
    """In Colab, copy Kaggle credentials from the notebook's Secrets into the environment (names copied)."""
    if "google.colab" not in sys.modules:
        return []
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return []
    copied = []
    for name in CREDENTIAL_VARIABLES:
        try:
            value = userdata.get(name)
        except Exception:  # SecretNotFoundError, NotebookAccessError: the secret is absent or not shared
            continue
        if value and not os.environ.get(name):
            os.environ[name] = value
            copied.append(name)
    return copied


def find_kaggle_credentials() -> str | None:
    """Where the Kaggle API would find credentials (a short description), or None if nowhere."""
    colab_secrets_to_environment()
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "environment variable KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "environment variables KAGGLE_USERNAME and KAGGLE_KEY"
    for name in ("access_token", "kaggle.json"):
        path = kaggle_config_dir() / name
        if path.is_file() and path.stat().st_size > 0:
            return str(path)
    return None


def download(destination: str | Path, datasets: tuple[str, ...] = tuple(MIRRORS)) -> Path | None:
    """Download ``datasets[0]`` into ``destination`` with kagglehub, falling back to the next mirror on failure.

    Returns ``destination``, or None with one message that says what to do. Nothing is downloaded when the data is
    already there (``utils.source.is_complete``); an interrupted download into ``destination`` is downloaded
    again. Without credentials where Kaggle wants them (401, 403), offline, or when a mirror is gone (404), each
    mirror's failure is listed and None returned, so the caller can fall back to the sample. Nothing on disk is
    deleted; ``DOWNLOAD_COMPLETE`` is written last, once a mirror's files are unpacked.
    """
    destination = Path(destination)
    if is_complete(destination):
        print(f"The data is already in {destination}; nothing to download.")
        return destination
    if interrupted_download(destination):
        print(f"The last download into {destination} did not finish (no {DOWNLOAD_COMPLETE}); downloading again.")
    try:
        import kagglehub
    except ImportError:
        print("kagglehub is not installed (Colab and Kaggle have it): pip install kagglehub, then run this again.")
        return None
    where = find_kaggle_credentials()  # for the message: kagglehub looks for them itself
    print(f"Kaggle credentials: {where or 'none found (a public dataset may download without them)'}")
    destination.mkdir(parents=True, exist_ok=True)
    (destination / DOWNLOAD_COMPLETE).unlink(missing_ok=True)
    failures = []
    for dataset in datasets:
        (destination / DOWNLOAD_STARTED).write_text(f"{dataset}: started; {DOWNLOAD_COMPLETE} is written at the end\n")
        print(f"Downloading {dataset} to {destination} ({MIRRORS.get(dataset, 'a Kaggle dataset')})...")
        try:
            kagglehub.dataset_download(dataset, output_dir=str(destination))
        except Exception as error:  # network errors, HTTP 401/403/404 (kagglehub's KaggleApiHTTPError)
            failures.append(f"  - {dataset}: {type(error).__name__}: {error}")
            continue
        if holds_data_files(destination):
            (destination / DOWNLOAD_COMPLETE).write_text(f"{dataset}: downloaded and unpacked\n")
            return destination
        failures.append(f"  - {dataset}: downloaded, but {destination} holds no label CSV and DICOM files")
    print(f"The download failed; {destination} is left as it is and does not count as data until a download "
          "finishes.\n" + "\n".join(failures) + "\nCheck the network connection, then run the download again. "
          "A 404 means the mirror is gone: pass another handle in datasets.\n" + HOW_TO_GET_CREDENTIALS)
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.kaggle_download DESTINATION``: download the data there (exit status 1 if it failed)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("destination", help="the folder to hold the data; set SIIM_DATA_DIR to it afterwards")
    parser.add_argument("--dataset", action="append", default=None,
                        help=f"a Kaggle dataset handle to try, in order (default: {', '.join(MIRRORS)})")
    args = parser.parse_args(argv)
    return 0 if download(args.destination, tuple(args.dataset or MIRRORS)) else 1


if __name__ == "__main__":
    sys.exit(main())
