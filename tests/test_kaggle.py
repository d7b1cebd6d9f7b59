"""The download path, offline: credential detection, no credentials, a failing or interrupted download, data present.

Kaggle cannot be reached here: stand-in ``kaggle`` modules play the download."""
import sys
import types

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


def test_download_without_credentials_explains_and_does_not_import_kaggle(no_credentials, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.delitem(sys.modules, "kaggle", raising=False)
    assert kaggle_download.download(tmp_path / "data") is None
    out = capsys.readouterr().out
    assert "No Kaggle credentials" in out and "KAGGLE_API_TOKEN" in out
    assert "kaggle" not in sys.modules


def test_failing_download_explains_and_keeps_existing_files(no_credentials, tmp_path, capsys, monkeypatch):
    """With credentials but a download that fails (no network, 403): a message, None, and nothing deleted."""
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    fake = types.ModuleType("kaggle")

    def refuse(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    fake.api = types.SimpleNamespace(dataset_download_files=refuse)
    monkeypatch.setitem(sys.modules, "kaggle", fake)
    destination = tmp_path / "data"
    destination.mkdir()
    (destination / "partial.zip").write_bytes(b"half a download")
    assert kaggle_download.download(destination) is None
    out = capsys.readouterr().out
    assert "failed" in out and "ConnectionError" in out and "403" in out
    assert (destination / "partial.zip").exists()


def fake_kaggle(monkeypatch, download_files):
    """Credentials in the environment and a stand-in ``kaggle`` module whose download calls ``download_files``."""
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0" * 32)
    fake = types.ModuleType("kaggle")
    fake.api = types.SimpleNamespace(dataset_download_files=download_files)
    monkeypatch.setitem(sys.modules, "kaggle", fake)


def test_an_interrupted_download_does_not_count_as_data(no_credentials, tmp_path, capsys, monkeypatch):
    """Stopped after unpacking part of the archive: not data, a message naming the folder, nothing deleted;
    downloading again completes it."""
    destination = tmp_path / "data"
    calls = []  # the names in the destination when each download starts

    def unpack(dataset, path, unzip, quiet):
        calls.append({p.name for p in destination.iterdir()})
        make_sample(path, num_train=2, num_test=0)  # a label CSV and DICOM files, as a partial unzip leaves
        if len(calls) == 1:
            raise KeyboardInterrupt  # the reader interrupts the kernel mid-download

    fake_kaggle(monkeypatch, unpack)
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
    def unpack_then_fail(dataset, path, unzip, quiet):
        make_sample(path, num_train=2, num_test=0)
        raise ConnectionError("Connection reset by peer")

    fake_kaggle(monkeypatch, unpack_then_fail)
    assert kaggle_download.download(tmp_path / "data") is None
    assert not source.is_complete(tmp_path / "data")
    assert "run the download again" in capsys.readouterr().out


def test_data_already_present_is_not_downloaded_again(tmp_path, capsys, monkeypatch):
    make_sample(tmp_path / "real", num_train=2, num_test=0)
    monkeypatch.setitem(sys.modules, "kaggle", None)  # importing kaggle would fail
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
