"""Is this machine ready for the book? ``python -m utils.setup_check`` prints a pass/fail table, one line per check.

The same check runs as a cell of the book's set-up check page (``report()``). It looks at Python and the packages
(``utils.environment``'s minimum versions and the packages the set-up cells install in Colab), memory and disk,
the GPU, whether the sample data exists or can be created, and whether Kaggle credentials are found (where, never
what they are). Every line that is not ``ok`` says what to do. The exit status is 1 when a required check fails;
a missing GPU or missing Kaggle credentials are warnings, since quick mode needs neither, unless ``--full`` asks
for what a full-mode run on the real data needs.

Only the standard library is imported here; TensorFlow and psutil are imported inside the checks that use them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from utils import environment
from utils.config import DATA_VARIABLE, REPO_ROOT, data_dir
from utils.kaggle_download import find_kaggle_credentials, kaggle_config_dir
from utils.source import interrupted_download, is_complete

OK, WARN, FAIL = "ok", "warn", "FAIL"
GIB = 2**30
# Rules of thumb, not measurements: TensorFlow and a quick-mode chapter fit in a few GiB; the sample takes about
# 125 MiB; a full-mode run caches the training split on disk (see benchmarks/results/cache_memory.md).
MIN_RAM_GIB = {"quick": 4, "full": 12}
MIN_DISK_GIB = {"quick": 1, "full": 10}
MAX_TESTED_PYTHON = (3, 13)
INSTALL_ADVICE = ("install the book's environment: `make env` (creates .venv from requirements-dev.txt) or "
                  "`pip install -r requirements.txt`; in Colab, run a chapter's first cell")
MISPLACED_KAGGLE_FILES = ("kaggle.json", "Downloads/kaggle.json")  # relative to the home folder and the cwd


class Check(NamedTuple):
    """One line of the table: what was checked, ``ok``/``warn``/``FAIL``, what was found, and what to do."""

    name: str
    status: str
    found: str
    advice: str = ""


def check_python() -> Check:
    """Python itself: at least ``environment.MINIMUM_PYTHON``; newer than the tested range is a warning."""
    version = sys.version.split()[0]
    minimum = ".".join(map(str, environment.MINIMUM_PYTHON))
    if sys.version_info[:2] < environment.MINIMUM_PYTHON:
        return Check("Python", FAIL, f"{version} (needs {minimum} or newer)",
                     "use Python 3.11 to 3.13 (in Colab: Runtime > Change runtime type > Runtime version: Latest)")
    if sys.version_info[:2] > MAX_TESTED_PYTHON:
        return Check("Python", WARN, f"{version} (tested on {minimum} to 3.13)",
                     "if something fails, try Python 3.11 to 3.13")
    return Check("Python", OK, version)


def check_packages() -> list[Check]:
    """One line per package: the minimum versions, then the other packages the chapters import."""
    checks = []
    for name, minimum in environment.MINIMUM_VERSIONS.items():
        found = environment.installed_version(name)
        if found is None:
            checks.append(Check(name, FAIL, "not installed", INSTALL_ADVICE))
        elif environment._version_tuple(found) < environment._version_tuple(minimum):
            checks.append(Check(name, FAIL, f"{found} (needs {minimum} or newer)",
                                "in Colab: Runtime > Change runtime type > Runtime version: Latest; elsewhere "
                                + INSTALL_ADVICE))
        else:
            checks.append(Check(name, OK, f"{found} (needs {minimum} or newer)"))
    extras = [r.split("==")[0] for r in environment.read_requirements(REPO_ROOT / environment.EXTRAS_FILE)]
    others = [n for n in environment.NEVER_INSTALL if n not in environment.MINIMUM_VERSIONS]
    for name in [*others, *extras]:
        found = environment.installed_version(name)
        checks.append(Check(name, OK, found) if found else Check(name, FAIL, "not installed", INSTALL_ADVICE))
    return checks


def total_memory_bytes() -> int | None:
    """The machine's RAM in bytes (psutil, else ``os.sysconf`` on Linux), or None when neither can tell."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(mode: str) -> Check:
    """RAM against ``MIN_RAM_GIB[mode]``; too little is a warning (chapters may still run, slowly or not at all)."""
    total = total_memory_bytes()
    if total is None:
        return Check("RAM", WARN, "unknown", "install psutil (`pip install psutil`) to measure it")
    found = f"{total / GIB:.1f} GiB"
    if total < MIN_RAM_GIB[mode] * GIB * 0.95:  # a "4 GB" machine reports a little less
        return Check("RAM", WARN, f"{found} (below {MIN_RAM_GIB[mode]} GiB for {mode} mode)",
                     "close other programs, or use a Colab runtime; full mode needs a high-RAM or GPU runtime")
    return Check("RAM", OK, found)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(mode: str, where: Path) -> Check:
    """Free space where the data and runs are written, against ``MIN_DISK_GIB[mode]``."""
    free = shutil.disk_usage(nearest_existing(where)).free
    found = f"{free / GIB:.1f} GiB free in {nearest_existing(where)}"
    if free < MIN_DISK_GIB[mode] * GIB:
        return Check("disk", FAIL, f"{found} (needs {MIN_DISK_GIB[mode]} GiB for {mode} mode)",
                     "free some space, or set UNET_BOOK_CACHE_DIR to a folder on a larger disk")
    return Check("disk", OK, found)


def check_gpu(required: bool) -> Check:
    """A GPU visible to TensorFlow. Without one, quick mode runs on the CPU: a warning unless ``required``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        return Check("GPU", FAIL if required else WARN, "not checked: TensorFlow is not installed", INSTALL_ADVICE)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return Check("GPU", OK, f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: " + ", ".join(g.name for g in gpus))
    return Check("GPU", FAIL if required else WARN, "none; TensorFlow runs on the CPU",
                 "quick mode is fine on a CPU; for full mode, in Colab choose Runtime > Change runtime type > "
                 "a GPU (T4 on the free tier, as quota allows)")


def check_data() -> Check:
    """The data the chapters read: the real data in ``$SIIM_DATA_DIR``, else the sample (present or creatable).

    Fast: it never creates the sample, it checks that the sample's folder can be written to.
    """
    configured = data_dir()
    if configured is not None and is_complete(configured):
        return Check("data", OK, f"the real data in {configured} ({DATA_VARIABLE})")
    root = REPO_ROOT / "data" / "siim-sample"  # utils.sample.SAMPLE_ROOT, without importing pydicom here
    note = f"{DATA_VARIABLE}={configured} is incomplete, so the chapters use the sample; " if configured else ""
    if configured is not None and interrupted_download(configured):
        note = f"{DATA_VARIABLE}={configured} holds a download that did not finish, so the chapters use the sample; "
        advice = "run the download again (chapter 6, utils.kaggle_download.download) into the same folder"
    else:
        advice = (f"point {DATA_VARIABLE} at the folder that holds train-rle.csv and the .dcm files, or unset it"
                  if configured else "")
    if (root / "siim" / ".sample-version").exists():
        return Check("data", WARN if configured else OK, f"{note}sample present in {root}", advice)
    parent = nearest_existing(root)
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        return Check("data", FAIL, f"{note}cannot write to {parent} ({error.strerror})",
                     "run the book from a folder you can write to (a copy of the repository in your home folder)")
    return Check("data", WARN if configured else OK,
                 f"{note}the sample can be created in {root} (by chapter 2 or 6, about a minute, once)", advice)


def misplaced_kaggle_files() -> list[Path]:
    """kaggle.json files in places where the Kaggle API does not look (the home folder, Downloads, the cwd)."""
    places = [base / name for base in (Path.home(), Path.cwd()) for name in MISPLACED_KAGGLE_FILES]
    return sorted({p.absolute() for p in places if p.is_file() and p.parent != kaggle_config_dir()})


def check_kaggle(required: bool) -> Check:
    """Whether the Kaggle API would find credentials: where, never what. Needed only for the real data."""
    where = find_kaggle_credentials()
    if where:
        return Check("Kaggle credentials", OK, f"found: {where}")
    misplaced = misplaced_kaggle_files()
    target = kaggle_config_dir() / "kaggle.json"
    if misplaced:
        advice = f"move {misplaced[0]} to {target} (then `chmod 600 {target}`)"
    else:
        advice = (f"only needed for the real data (chapter 6): put kaggle.json in {target}, or set KAGGLE_USERNAME "
                  "and KAGGLE_KEY (or KAGGLE_API_TOKEN); in Colab add them under Secrets (the key icon)")
    found = f"not found ({', '.join(map(str, misplaced))} is in the wrong place)" if misplaced else "not found"
    return Check("Kaggle credentials", FAIL if required else WARN, found, advice)


def run_checks(full: bool = False) -> list[Check]:
    """Every check, in table order. ``full`` asks for what full mode on the real data needs (GPU, credentials)."""
    mode = "full" if full else "quick"
    return [check_python(), *check_packages(), check_memory(mode), check_disk(mode, REPO_ROOT / "data"),
            check_gpu(required=full), check_data(), check_kaggle(required=full)]


def format_report(checks: list[Check]) -> str:
    """The table as text: one row per check, and under every row that is not ok, what to do."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  status  found", f"{'-' * width}  ------  -----"]
    for check in checks:
        lines.append(f"{check.name:<{width}}  {check.status:<6}  {check.found}")
        if check.status != OK and check.advice:
            lines.append(f"{'':<{width}}  -> {check.advice}")
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        lines.append(f"NOT READY: {len(failed)} required check(s) failed ({', '.join(failed)}); do what the "
                     "lines marked FAIL say, then run the check again.")
    else:
        lines.append("READY: every required check passed" + (f" ({len(warned)} warning(s) above)." if warned else "."))
    return "\n".join(lines)


def report(full: bool = False) -> list[Check]:
    """Run the checks and print the table (the set-up check page's cell); returns the checks."""
    checks = run_checks(full)
    print(format_report(checks))
    return checks


def main(argv: list[str] | None = None) -> int:
    """``python -m utils.setup_check [--full]``: print the table; 1 when a required check failed, else 0."""
    parser = argparse.ArgumentParser(prog="python -m utils.setup_check", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="also require what full mode on the real data needs: a GPU and Kaggle credentials")
    checks = report(parser.parse_args(argv).full)
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
