"""The download path, offline: credential detection, no credentials, a failing or interrupted download, data present.

Kaggle cannot be reached here: stand-in ``kagglehub`` modules play the download."""
import sys
import types
from pathlib import Path

import pytest

from utils import kaggle_download, source
from utils.sample import make_sample


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in kaggle_download.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return tmp_path / "kaggle-config"


def test_no_credentials_anywhere(no_credentials):
    assert kaggle_download.find_kaggle_credentials() is None


@pytest.mark.parametrize(
    "variables, expected",
    [({"KAGGLE_API_TOKEN": "t"}, "KAGGLE_API_TOKEN"), ({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, "KAGGLE_USERNAME")],
)
def test_credentials_from_the_environment(no_credentials, monkeypatch, variables, expected):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert expected in kaggle_download.find_kaggle_credentials()


@pytest.mark.parametrize("filename", ["access_token", "kaggle.json"])
def test_credentials_from_files(no_credentials, filename):
    no_credentials.mkdir()
    (no_credentials / filename).write_text("secret")
    assert kaggle_download.find_kaggle_credentials().endswith(filename)


def test_credentials_from_colab_secrets(no_credentials, monkeypatch):
    colab = types.ModuleType("google.colab")
    secrets = {"KAGGLE_API_TOKEN": "from-secrets"}
    colab.userdata = types.SimpleNamespace(get=lambda name: secrets[name])  # KeyError for an absent secret
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert "KAGGLE_API_TOKEN" in kaggle_download.find_kaggle_credentials()


class KaggleApiHTTPError(Exception):
    """What kagglehub raises for an HTTP error (its message starts with the status)."""


def fake_kagglehub(monkeypatch, dataset_download):
    """A stand-in ``kagglehub`` module whose ``dataset_download`` is ``dataset_download``."""
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=dataset_download))


def refuse(status):
    def dataset_download(handle, output_dir=None):
        raise KaggleApiHTTPError(f"{status} Client Error for url: https://www.kaggle.com/api/v1/datasets/{handle}")
    return dataset_download


def test_without_credentials_a_refusal_explains_how_to_log_in(no_credentials, tmp_path, capsys, monkeypatch):
    fake_kagglehub(monkeypatch, refuse(401))
    assert kaggle_download.download(tmp_path / "data") is None
    out = capsys.readouterr().out
    assert "Kaggle credentials: none found" in out and "KAGGLE_API_TOKEN" in out and "kagglehub.login()" in out
    assert all(f"{handle}: KaggleApiHTTPError: 401" in out for handle in kaggle_download.MIRRORS)  # both tried
    assert not source.is_complete(tmp_path / "data")


def test_a_mirror_that_is_gone_falls_back_to_the_next(no_credentials, tmp_path, capsys, monkeypatch):
    calls = []

    def dataset_download(handle, output_dir=None):
        calls.append(handle)
        if handle == "seesee/siim-train-test":
            raise KaggleApiHTTPError("404 Client Error: Not Found for url: .../seesee/siim-train-test")
        make_sample(Path(output_dir) / "pneumothorax-mirror", num_train=2, num_test=0)  # files unpacked there
        return output_dir

    fake_kagglehub(monkeypatch, dataset_download)
    destination = tmp_path / "data"
    assert kaggle_download.download(destination) == destination
    assert calls == list(kaggle_download.MIRRORS)
    marker = (destination / source.DOWNLOAD_COMPLETE).read_text()
    assert "jesperdramsch/siim-acr-pneumothorax-segmentation-data" in marker
    assert source.is_complete(destination)


def test_a_403_or_no_network_explains_and_keeps_existing_files(no_credentials, tmp_path, capsys, monkeypatch):
    """A download that fails on every mirror: one message naming each failure, None, and nothing deleted."""
    destination = tmp_path / "data"
    destination.mkdir()
    (destination / "partial.zip").write_bytes(b"half a download")
    for failure, expected in ((refuse(403), "403"), (refuse("Failed to resolve 'www.kaggle.com'"), "resolve")):
        fake_kagglehub(monkeypatch, failure)
        assert kaggle_download.download(destination) is None
        out = capsys.readouterr().out
        assert "The download failed" in out and expected in out and "rules have not been accepted" in out
        assert (destination / "partial.zip").exists() and not source.is_complete(destination)


def test_without_kagglehub_it_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # importing it fails
    assert kaggle_download.download(tmp_path / "data") is None
    assert "pip install kagglehub" in capsys.readouterr().out


def test_an_interrupted_download_does_not_count_as_data(no_credentials, tmp_path, capsys, monkeypatch):
    """Stopped after unpacking part of the files: not data, a message naming the folder, nothing deleted;
    downloading again completes it."""
    destination = tmp_path / "data"
    calls = []  # the names in the destination when each download starts

    def unpack(handle, output_dir=None):
        calls.append({p.name for p in destination.iterdir()})
        make_sample(Path(output_dir), num_train=2, num_test=0)  # a label CSV and DICOM files, as a partial unpack
        if len(calls) == 1:
            raise KeyboardInterrupt  # the reader interrupts the kernel mid-download
        return output_dir

    fake_kagglehub(monkeypatch, unpack)
    with pytest.raises(KeyboardInterrupt):
        kaggle_download.download(destination)
    assert not source.is_complete(destination)  # though it holds a label CSV and DICOM files
    monkeypatch.setattr("utils.sample.ensure_sample", lambda: tmp_path / "sample")
    monkeypatch.setenv("SIIM_DATA_DIR", str(destination))
    assert source.data_root().path == tmp_path / "sample"
    out = capsys.readouterr().out
    assert f"{destination} holds a download that did not finish" in out and "run the download again" in out
    assert any(destination.rglob("*.dcm"))  # the reader's files are kept

    assert kaggle_download.download(destination) == destination  # the second download finishes
    assert "did not finish" in capsys.readouterr().out and len(calls) == 2
    assert source.DOWNLOAD_COMPLETE not in calls[1]  # the marker is written only after the download finished
    assert (destination / source.DOWNLOAD_COMPLETE).exists() and source.is_complete(destination)
    assert source.data_root().path == destination


def test_a_download_that_fails_after_unpacking_some_files_does_not_count(no_credentials, tmp_path, capsys,
                                                                         monkeypatch):
    def unpack_then_fail(handle, output_dir=None):
        make_sample(Path(output_dir), num_train=2, num_test=0)
        raise ConnectionError("Connection reset by peer")

    fake_kagglehub(monkeypatch, unpack_then_fail)
    assert kaggle_download.download(tmp_path / "data") is None
    assert not source.is_complete(tmp_path / "data")
    assert "run the download again" in capsys.readouterr().out


def test_data_already_present_is_not_downloaded_again(tmp_path, capsys, monkeypatch):
    make_sample(tmp_path / "real", num_train=2, num_test=0)
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # importing kagglehub would fail
    assert kaggle_download.download(tmp_path / "real") == tmp_path / "real"
    assert "nothing to download" in capsys.readouterr().out


def test_data_root_prefers_real_data_and_falls_back_to_the_sample(tmp_path, monkeypatch, capsys):
    """Data copied into SIIM_DATA_DIR by hand has no download markers: its files decide."""
    make_sample(tmp_path / "real", num_train=2, num_test=0)
    monkeypatch.setenv("SIIM_DATA_DIR", str(tmp_path / "real"))
    found = source.data_root()
    assert found.path == tmp_path / "real" and "real data" in found.description
    monkeypatch.setattr("utils.sample.ensure_sample", lambda: tmp_path / "sample")
    monkeypatch.setenv("SIIM_DATA_DIR", str(tmp_path / "empty"))
    root, description = source.data_root()  # a named tuple: it unpacks too
    assert root == tmp_path / "sample" and "sample" in description
    assert "using the bundled sample" in capsys.readouterr().out


def attach(input_dir, layout):
    """Files in the layout of one of Kaggle's attached inputs (empty files: discovery looks at names only)."""
    for name in layout:
        path = input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


SEESEE = ["siim-train-test/siim/dicom-images-train/1.2.3/1.2.4/1.2.5.dcm", "siim-train-test/siim/train-rle.csv",
          "siim-train-test/siim/dicom-images-test/1.2.6/1.2.7/1.2.8.dcm"]
JESPERDRAMSCH = ["siim-acr-pneumothorax-segmentation-data/pneumothorax/dicom-images-train/1.2/1.3/1.4.dcm",
                 "siim-acr-pneumothorax-segmentation-data/pneumothorax/train-rle.csv"]
COMPETITION = ["siim-acr-pneumothorax-segmentation/stage_2_images/ID_0011fe81e.dcm",
               "siim-acr-pneumothorax-segmentation/stage_2_train.csv"]


@pytest.mark.parametrize("layout, expected", [
    (SEESEE, "siim-train-test/siim"),
    (JESPERDRAMSCH, "siim-acr-pneumothorax-segmentation-data/pneumothorax"),
    (["datasets/seesee/" + name for name in SEESEE], "datasets/seesee/siim-train-test/siim"),  # one level deeper
    (COMPETITION + SEESEE, "siim-train-test/siim"),  # the competition's files beside a mirror: the mirror
], ids=["seesee", "jesperdramsch", "nested", "competition-and-mirror"])
def test_on_kaggle_the_attached_data_is_found_with_no_setting(tmp_path, monkeypatch, layout, expected):
    attach(tmp_path / "input", layout)
    monkeypatch.delenv("SIIM_DATA_DIR", raising=False)
    monkeypatch.setenv("UNET_BOOK_KAGGLE_INPUT", str(tmp_path / "input"))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    found = source.data_root()
    assert found.path == tmp_path / "input" / expected and "attached to this Kaggle notebook" in found.description


def test_kaggle_without_training_images_uses_the_sample_and_says_what_to_attach(tmp_path, monkeypatch, capsys):
    attach(tmp_path / "input", COMPETITION)  # the competition's own download: stage-2 test images only
    attach(tmp_path / "input", ["images-only/siim/dicom-images-train/1.2/1.3/1.4.dcm"])  # no label CSV beside it
    monkeypatch.delenv("SIIM_DATA_DIR", raising=False)
    monkeypatch.setenv("UNET_BOOK_KAGGLE_INPUT", str(tmp_path / "input"))
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
    monkeypatch.setattr("utils.sample.ensure_sample", lambda: tmp_path / "sample")
    assert source.kaggle_attached_data() is None
    assert source.data_root().path == tmp_path / "sample"
    assert "seesee/siim-train-test" in capsys.readouterr().out


def test_attached_data_is_used_only_on_kaggle_and_siim_data_dir_comes_first(tmp_path, monkeypatch):
    attach(tmp_path / "input", SEESEE)
    monkeypatch.setenv("UNET_BOOK_KAGGLE_INPUT", str(tmp_path / "input"))
    monkeypatch.delenv("SIIM_DATA_DIR", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setattr("utils.sample.ensure_sample", lambda: tmp_path / "sample")
    assert source.data_root().path == tmp_path / "sample"  # not on Kaggle: the folder is not looked at
    make_sample(tmp_path / "mine", num_train=2, num_test=0)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("SIIM_DATA_DIR", str(tmp_path / "mine"))
    assert source.data_root().path == tmp_path / "mine"
