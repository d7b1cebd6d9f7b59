"""What the book needs from its Python environment, and the guarded install that the set-up cells run in Colab.

The book's code works on a range of versions, not just on the exact pins of ``requirements.txt``:
``MINIMUM_VERSIONS`` below: the oldest of Colab's and Kaggle's stacks of August 2026 (numpy 2.0 and pandas 2.2.2
on Kaggle and on Colab's 2026.07 runtime), which ``make test-colab`` tests.
In Colab the set-up cell installs only what the runtime lacks, listed in ``requirements-colab-extras.txt``, and
never touches the packages in ``NEVER_INSTALL``: Colab imports numpy when the kernel starts, and replacing it (or
TensorFlow, or pandas, which Colab's own package pins) would need a runtime restart or break the runtime.

Only the standard library is imported here, so that this module works before anything is installed.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

EXTRAS_FILE = "requirements-colab-extras.txt"
MINIMUM_PYTHON = (3, 11)
MINIMUM_VERSIONS = {"tensorflow": "2.20", "keras": "3.13", "numpy": "2.0", "pandas": "2.2"}
NEVER_INSTALL = ("tensorflow", "keras", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib")


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"2.20.0rc1"`` -> ``(2, 20, 0)``: the leading numeric parts, enough to compare with a minimum."""
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group().split("."))


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (e.g. ``"keras-tuner"``), or None if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_requirements(path: str | Path) -> list[str]:
    """The ``name==version`` lines of a pip requirements file, without comments, blank lines or pip options
    (``-r other.txt``, ``-c constraints.txt``: the other file's pins are not this file's)."""
    lines = [line.split("#")[0].strip() for line in Path(path).read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("-")]
    for line in requirements:
        if "==" not in line:
            raise ValueError(f"{path}: {line!r} is not pinned as name==version")
    return requirements


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements (``name==version``) whose exact version is not installed."""
    return [r for r in requirements if installed_version(r.split("==")[0]) != r.split("==")[1]]


def version_problems() -> list[str]:
    """One line per package (or Python) older than the book's minimum, saying what is installed."""
    problems = []
    if sys.version_info[:2] < MINIMUM_PYTHON:
        minimum = ".".join(map(str, MINIMUM_PYTHON))
        problems.append(f"Python {sys.version.split()[0]} (the book needs {minimum} or newer)")
    for name, minimum in MINIMUM_VERSIONS.items():
        found = installed_version(name)
        if found is None or _version_tuple(found) < _version_tuple(minimum):
            problems.append(f"{name} {found or 'not installed'} (the book needs {minimum} or newer)")
    return problems


def prepare(book_dir: str | Path, install_missing: bool) -> list[str]:
    """The set-up cell's second half: install what is missing (in Colab), then check the versions.

    With ``install_missing``, pip installs the lines of ``requirements-colab-extras.txt`` whose exact version
    is absent, and nothing else: a constraints file holds every package of ``NEVER_INSTALL`` at the version
    already installed, so a dependency can never pull in another TensorFlow, numpy or pandas. When everything
    is present it runs nothing, so running the cell twice is harmless. pip's output is shown, not hidden.

    Returns the requirements it installed. Prints one message saying what to do if the runtime is older than
    the book's minimums (``MINIMUM_VERSIONS``).
    """
    installed = []
    if install_missing:
        extras = read_requirements(Path(book_dir) / EXTRAS_FILE)
        forbidden = [r for r in extras if r.split("==")[0].lower() in NEVER_INSTALL]
        if forbidden:
            raise ValueError(f"{EXTRAS_FILE} lists {forbidden}, which Colab already has; remove them from the file.")
        installed = missing_requirements(extras)
        if installed:
            pins = [f"{name}=={installed_version(name)}" for name in NEVER_INSTALL if installed_version(name)]
            with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as constraints:
                constraints.write("\n".join(pins) + "\n")
            subprocess.run([sys.executable, "-m", "pip", "install", "-c", constraints.name, *installed], check=True)
    problems = version_problems()
    if problems:
        print(
            "This runtime is older than the book needs: " + "; ".join(problems) + ". In Colab choose Runtime > "
            "Change runtime type > Runtime version: Latest (or 2026.07, the oldest that works), then run this cell "
            "again; on Kaggle, choose the latest environment in the notebook's settings; elsewhere, install the "
            "book's environment (`make book` creates it in .venv)."
        )
    return installed
