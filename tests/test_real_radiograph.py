"""Chapter 6's real radiograph (RG1_UNCR.dcm from pydicom-data): found offline, installed only in Colab, optional.

The chapter's own cells are run here, as they stand in the notebook, with the package present or made to look
missing, and with pip's command recorded instead of run.
"""
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "notebooks" / "06_getting_the_data.ipynb"
HAS_PYDICOM_DATA = importlib.util.find_spec("data_store") is not None


def cell(fragment: str) -> str:
    """The source of the one code cell of chapter 6 that contains ``fragment``."""
    cells = json.loads(CHAPTER.read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and fragment in "".join(c["source"])]
    return source


FIND_CELL = cell("def find_test_film")
FILM_CELL = cell("def window(")
SIDE_BY_SIDE_CELL = cell('synthetic = read_image(example["path"])')


def run_find_cell(monkeypatch, in_colab: bool, missing: bool, pip_returncode: int = 0) -> tuple[dict, list]:
    """Run the cell that finds (and in Colab installs) pydicom-data; return its namespace and the pip calls."""
    if missing:
        version = importlib.metadata.version

        def no_pydicom_data(name):
            if name == "pydicom-data":
                raise importlib.metadata.PackageNotFoundError(name)
            return version(name)

        monkeypatch.setattr(importlib.metadata, "version", no_pydicom_data)
    calls = []

    def record(command, *args, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, pip_returncode)

    monkeypatch.setattr(subprocess, "run", record)

    def no_download(*args, **kwargs):
        raise AssertionError("pydicom tried to download a test file")

    monkeypatch.setattr("pydicom.data.data_manager.data_path_with_download", no_download)
    namespace = {"IN_COLAB": in_colab, "book_dir": ROOT, "Path": Path, "subprocess": subprocess, "sys": sys}
    exec(compile(FIND_CELL, "chapter-6-find-film", "exec"), namespace)
    return namespace, calls


def test_pydicom_data_is_pinned_locally_and_never_a_colab_requirement():
    from utils import environment

    assert "pydicom-data==1.0.0" in environment.read_requirements(ROOT / "requirements.txt")

    def with_includes(name):  # a requirements file's lines and those of the files it includes with -r
        lines = (ROOT / name).read_text().splitlines()
        return lines + [line for ref in lines if ref.startswith("-r ") for line in with_includes(ref[3:].strip())]

    for name in ("requirements-colab.txt", "requirements-colab-extras.txt", "requirements-test.txt"):
        assert not any("pydicom-data" in line.split("#")[0] for line in with_includes(name)), name


def test_without_the_package_the_chapter_says_so_and_installs_nothing_locally(monkeypatch, capsys):
    namespace, calls = run_find_cell(monkeypatch, in_colab=False, missing=True)
    assert namespace["real_path"] is None and calls == []
    assert "RG1_UNCR.dcm is not available (pip install pydicom-data==1.0.0)" in capsys.readouterr().out


def test_in_colab_a_missing_package_is_installed_by_this_cell_and_a_failure_is_not_fatal(monkeypatch, capsys):
    namespace, calls = run_find_cell(monkeypatch, in_colab=True, missing=True, pip_returncode=1)
    assert calls == [[sys.executable, "-m", "pip", "install", "pydicom-data==1.0.0"]]
    out = capsys.readouterr().out
    assert "Installing pydicom-data==1.0.0" in out and "installation failed" in out and "is not available" in out
    assert namespace["real_path"] is None


def test_the_figure_cells_go_on_without_the_film(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    namespace = {"real_path": None, "REAL_FILM": "RG1_UNCR.dcm", "PYDICOM_DATA": "pydicom-data==1.0.0", "np": np,
                 "plt": plt, "pydicom": None, "read_image": lambda path: np.zeros((1024, 1024), np.float32),
                 "example": {"path": "synthetic.dcm"}, "description": "the bundled synthetic sample",
                 "dataset": types.SimpleNamespace(BitsStored=8, PhotometricInterpretation="MONOCHROME2")}
    exec(compile(FILM_CELL, "chapter-6-film", "exec"), namespace)
    assert "Skipped: RG1_UNCR.dcm is not available" in capsys.readouterr().out and not shown
    exec(compile(SIDE_BY_SIDE_CELL, "chapter-6-side-by-side", "exec"), namespace)
    assert len(shown) == 1 and len(shown[0].axes) == 1  # the synthetic radiograph alone
    plt.close("all")


@pytest.mark.skipif(not HAS_PYDICOM_DATA, reason="pydicom-data is not installed (pip install pydicom-data==1.0.0)")
def test_with_the_package_the_film_is_found_offline_and_the_chapter_checks_hold(monkeypatch):
    namespace, calls = run_find_cell(monkeypatch, in_colab=True, missing=False)
    assert calls == [], "nothing to install when the package is present"
    path = namespace["real_path"]
    assert path.name == "RG1_UNCR.dcm" and path.is_file()

    import pydicom

    from utils.dicom import read_image

    monkeypatch.setattr(plt, "show", lambda: None)
    namespace.update(np=np, plt=plt, pydicom=pydicom, read_image=read_image)
    exec(compile(FILM_CELL, "chapter-6-film", "exec"), namespace)  # its assertions: MONOCHROME1, 15 bits, ...
    assert namespace["lung_levels"]["percentile window"] > namespace["lung_levels"]["file's window"]
    plt.close("all")
