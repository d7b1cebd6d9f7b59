"""Downloading the SIIM-ACR data with the Kaggle API (``utils.source`` decides which folder the chapters read).

``import kaggle`` (2.x) authenticates as it is imported and calls ``exit(1)`` (printing a help text) when it
finds no credentials, so this module looks for credentials itself first and imports kaggle only when there
are some.

The download marks its destination (see ``utils.source``): ``DOWNLOAD_STARTED`` before it starts, and
``DOWNLOAD_COMPLETE`` only after Kaggle has downloaded and unpacked the archive. A download stopped on the way
(an interrupted kernel, a lost connection) leaves the first marker alone, so the folder does not count as data
until the download is run again and finishes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from utils.source import DOWNLOAD_COMPLETE, DOWNLOAD_STARTED, holds_data_files, interrupted_download, is_complete

DATASET = "seesee/siim-train-test"  # the Kaggle mirror in the layout siim/dicom-images-train/..., siim/train-rle.csv
CREDENTIAL_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")

HOW_TO_GET_CREDENTIALS = """\
To download the real data, give the Kaggle API a token, in one of these ways:
  - an API token from https://www.kaggle.com/settings/api in the environment variable KAGGLE_API_TOKEN,
    or in the file ~/.kaggle/access_token;
  - a legacy kaggle.json (username and key) in ~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY;
  - in Colab: add KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY) under Secrets (the key icon).
For the competition's own files, accept the competition's rules on its Kaggle page first."""


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


def download(destination: str | Path, dataset: str = DATASET) -> Path | None:
    """Download and unpack ``dataset`` into ``destination``; return it, or None (with a message) on failure.

    Nothing is downloaded when the data is already there (``utils.source.is_complete``); an interrupted
    download into ``destination`` is downloaded again. Without credentials, offline, or when Kaggle refuses
    (rules not accepted, a wrong token), it prints one message that says what to do and returns None, so the
    caller can fall back to the sample. Nothing already on disk is deleted; Kaggle overwrites the files it
    downloads again. ``DOWNLOAD_COMPLETE`` is written last, once the data is unpacked.
    """
    destination = Path(destination)
    if is_complete(destination):
        print(f"The data is already in {destination}; nothing to download.")
        return destination
    if interrupted_download(destination):
        print(f"The last download into {destination} did not finish (no {DOWNLOAD_COMPLETE}); downloading again.")
    where = find_kaggle_credentials()
    if where is None:
        print(f"No Kaggle credentials found, so the real data cannot be downloaded.\n{HOW_TO_GET_CREDENTIALS}")
        return None
    print(f"Using Kaggle credentials from {where}; downloading {dataset} to {destination} (about 2 GB)...")
    try:
        import kaggle  # authenticates on import

        destination.mkdir(parents=True, exist_ok=True)
        (destination / DOWNLOAD_COMPLETE).unlink(missing_ok=True)
        (destination / DOWNLOAD_STARTED).write_text(f"{dataset}: started; {DOWNLOAD_COMPLETE} is written at the end\n")
        kaggle.api.dataset_download_files(dataset, path=str(destination), unzip=True, quiet=False)
    except (Exception, SystemExit) as error:  # network errors, HTTP 401/403/404, exit(1) from a bad login
        print(
            f"The download of {dataset} failed ({type(error).__name__}: {error}); {destination} is left as it is "
            "and does not count as data until a download finishes.\n"
            "Check the network connection and the credentials, then run the download again; a 403 usually means "
            f"the dataset's or the competition's rules have not been accepted on kaggle.com yet.\n"
            f"{HOW_TO_GET_CREDENTIALS}"
        )
        return None
    if not holds_data_files(destination):
        print(f"The download of {dataset} finished, but {destination} holds no label CSV and DICOM files: "
              f"check that {dataset} is the SIIM-ACR data in the layout utils.data expects.")
        return None
    (destination / DOWNLOAD_COMPLETE).write_text(f"{dataset}: downloaded and unpacked\n")
    return destination
