"""The learners' set-up check: a clear failure line when something is missing, and the command runs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils import environment, setup_check

ROOT = Path(__file__).resolve().parent.parent


def no_gpu_check(required):
    """Stand-in for the GPU check, so these tests need not import TensorFlow."""
    return setup_check.Check("GPU", setup_check.WARN, "not checked in this test")


def without_credentials(monkeypatch, home):
    """No Kaggle credentials anywhere: empty environment variables and an empty home folder."""
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


def test_a_missing_package_fails_with_what_to_do(monkeypatch, capsys):
    real = environment.installed_version
    monkeypatch.setattr(environment, "installed_version", lambda name: None if name == "pydicom" else real(name))
    monkeypatch.setattr(setup_check, "check_gpu", no_gpu_check)
    assert setup_check.main([]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("pydicom "))
    assert "FAIL" in line and "not installed" in line
    advice = out.splitlines()[out.splitlines().index(line) + 1]
    assert "->" in advice and "make env" in advice and "pip install -r requirements.txt" in advice
    assert "NOT READY" in out and "pydicom" in out.splitlines()[-1]


def test_an_old_package_says_which_version_is_needed(monkeypatch):
    real = environment.installed_version
    monkeypatch.setattr(environment, "installed_version", lambda name: "2.17.1" if name == "tensorflow" else real(name))
    (check,) = [c for c in setup_check.check_packages() if c.name == "tensorflow"]
    assert check.status == setup_check.FAIL and "2.17.1 (needs 2.20 or newer)" in check.found
    assert "Runtime version: Latest" in check.advice


def test_no_credentials_is_a_clear_warning_and_required_in_full_mode(monkeypatch, tmp_path):
    without_credentials(monkeypatch, tmp_path)
    check = setup_check.check_kaggle(required=False)
    assert check.status == setup_check.WARN and check.found == "not found"
    assert str(tmp_path / ".kaggle" / "kaggle.json") in check.advice and "KAGGLE_USERNAME" in check.advice
    assert setup_check.check_kaggle(required=True).status == setup_check.FAIL


def test_credentials_are_located_never_printed(monkeypatch, tmp_path, capsys):
    without_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef-secret")
    monkeypatch.setattr(setup_check, "check_gpu", no_gpu_check)
    setup_check.report()
    out = capsys.readouterr().out
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in out and "secret" not in out and "someone" not in out


def test_a_misplaced_kaggle_json_says_where_to_move_it(monkeypatch, tmp_path):
    without_credentials(monkeypatch, tmp_path)
    (tmp_path / "Downloads").mkdir()
    (tmp_path / "Downloads" / "kaggle.json").write_text('{"username": "someone", "key": "secret"}')
    check = setup_check.check_kaggle(required=False)
    assert "wrong place" in check.found
    assert check.advice.startswith(f"move {tmp_path / 'Downloads' / 'kaggle.json'} to {tmp_path / '.kaggle'}")


def test_an_unwritable_data_folder_fails(monkeypatch, tmp_path):
    monkeypatch.delenv("SIIM_DATA_DIR", raising=False)
    monkeypatch.setattr(setup_check, "REPO_ROOT", tmp_path)
    assert setup_check.check_data().status == setup_check.OK  # no sample yet, but it can be created
    tmp_path.chmod(0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root, which can write to a read-only folder: nothing to test")
        check = setup_check.check_data()
        assert check.status == setup_check.FAIL and "cannot write" in check.found and check.advice
    finally:
        tmp_path.chmod(0o700)


def test_an_interrupted_download_says_to_run_it_again(monkeypatch, tmp_path):
    from utils.source import DOWNLOAD_STARTED

    data = tmp_path / "siim"
    data.mkdir()
    (data / "train-rle.csv").write_text("ImageId, EncodedPixels\n")
    (data / "1.dcm").write_bytes(b"")
    (data / DOWNLOAD_STARTED).write_text("started\n")
    monkeypatch.setenv("SIIM_DATA_DIR", str(data))
    monkeypatch.setattr(setup_check, "REPO_ROOT", tmp_path)
    check = setup_check.check_data()
    assert check.status == setup_check.WARN and f"{data} holds a download that did not finish" in check.found
    assert "run the download again" in check.advice


def test_too_little_memory_is_a_warning(monkeypatch):
    monkeypatch.setattr(setup_check, "total_memory_bytes", lambda: 2 * setup_check.GIB)
    check = setup_check.check_memory("quick")
    assert check.status == setup_check.WARN and "below 4 GiB" in check.found and check.advice


def test_the_command_runs(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "utils.setup_check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["check", "status", "found"] and lines[-1].startswith("READY")
    for name in ("Python", "tensorflow", "keras-tuner", "RAM", "disk", "GPU", "data", "Kaggle credentials"):
        assert any(line.startswith(name + " ") for line in lines), f"no line for {name}"
