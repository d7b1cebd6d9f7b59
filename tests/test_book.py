"""The book's structure: notebooks clean and listed, one repository URL, pinned environment, Colab set-up."""
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def toc_files(entries):
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        yield from toc_files(entry.get("chapters", []) + entry.get("sections", []) + entry.get("parts", []))


TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
TOC_FILES = [TOC["root"], *toc_files(TOC.get("parts", []))]


def load(path):
    return json.loads(path.read_text())


def code_cells(path):
    return ["".join(c["source"]) for c in load(path)["cells"] if c["cell_type"] == "code"]


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks under notebooks/"
    assert all(re.match(r"\d\d_[a-z0-9_]+\.ipynb$", nb.name) for nb in NOTEBOOKS), [nb.name for nb in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(notebook):
    for index, cell in enumerate(load(notebook)["cells"]):
        if cell["cell_type"] == "code":
            assert not cell["outputs"], f"{notebook.name} cell {index} stores outputs; clear them before committing"
            assert cell["execution_count"] is None, f"{notebook.name} cell {index} has an execution count"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_table_of_contents(notebook):
    assert f"notebooks/{notebook.stem}" in TOC_FILES, f"{notebook.name} is missing from _toc.yml"


def test_every_toc_entry_exists():
    for entry in TOC_FILES:
        candidates = (ROOT / Path(entry).parent).glob(Path(entry).name + ".*")
        matches = [p for p in candidates if p.suffix in (".md", ".ipynb")]
        assert matches, f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_chapter_conventions(notebook):
    cells = load(notebook)["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    for heading in ("**You will learn to**", "**Time:**", "## Summary", "## Exercises", ":class: dropdown"):
        assert heading in markdown, f"{notebook.name} lacks {heading!r}"
    assert "REPO_URL" in code_cells(notebook)[0], f"{notebook.name}: the first code cell must be the set-up cell"
    assert any("assert " in source for source in code_cells(notebook)), f"{notebook.name} checks nothing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_uses_the_repository_url_from_config(notebook):
    urls = re.findall(r'REPO_URL = "([^"]+)"', code_cells(notebook)[0])
    assert urls == [REPO_URL], f"{notebook.name}: set REPO_URL to repository.url of _config.yml ({REPO_URL})"


def test_launch_buttons_point_at_colab_and_binder():
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["launch_buttons"]["binderhub_url"]
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["execute"]["execute_notebooks"] == "cache"


def run_setup_cell_as_colab(notebook, monkeypatch, tmp_path, missing=(), versions=None):
    """Run a notebook's set-up cell as Colab would, offline: a stand-in google.colab module, a fake clone, and
    pip commands recorded instead of run. ``missing`` distributions look uninstalled; ``versions`` overrides
    what others report. Returns the recorded commands."""
    from utils import environment

    calls = []

    def run(command, check):
        calls.append(command)
        if command[:2] == ["git", "clone"]:  # the clone: the book's files at the target
            Path(command[-1]).mkdir(parents=True)
            shutil.copy(ROOT / environment.EXTRAS_FILE, command[-1])

    real_version = environment.installed_version
    overrides = {**dict.fromkeys(missing), **(versions or {})}
    monkeypatch.setattr(environment, "installed_version", lambda name: overrides.get(name, real_version(name)))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("UNET_BOOK_DIR", str(tmp_path / "book"))
    exec(compile(code_cells(notebook)[0], "setup-cell", "exec"), {})
    assert sys.path[0] == str(tmp_path / "book")
    clone = calls.pop(0)
    assert clone[:2] == ["git", "clone"] and REPO_URL in clone and "main" in clone
    return calls


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_setup_installs_only_what_colab_lacks(notebook, monkeypatch, tmp_path):
    from utils import environment

    extras = environment.read_requirements(ROOT / environment.EXTRAS_FILE)
    (install,) = run_setup_cell_as_colab(notebook, monkeypatch, tmp_path, missing=[r.split("==")[0] for r in extras])
    assert install[1:4] == ["-m", "pip", "install"] and "-q" not in install  # pip's output (and prompts) stay visible
    constraints_file = install[install.index("-c") + 1]
    assert install[install.index("-c") + 2:] == extras
    for requirement in install[4:]:
        assert requirement.split("==")[0].lower() not in environment.NEVER_INSTALL
    constraints = Path(constraints_file).read_text().split()
    for name in ("tensorflow", "keras", "numpy", "pandas"):  # held at what is installed: pip cannot replace them
        assert f"{name}=={environment.installed_version(name)}" in constraints


def test_colab_setup_run_twice_installs_nothing(monkeypatch, tmp_path):
    assert run_setup_cell_as_colab(NOTEBOOKS[0], monkeypatch, tmp_path) == []


def test_colab_setup_says_what_to_do_on_an_old_runtime(monkeypatch, tmp_path, capsys):
    run_setup_cell_as_colab(NOTEBOOKS[0], monkeypatch, tmp_path, versions={"tensorflow": "2.17.1", "keras": "3.8.0"})
    message = capsys.readouterr().out
    assert "tensorflow 2.17.1 (the book needs 2.20 or newer)" in message and "keras 3.8.0" in message
    assert "Runtime version: Latest" in message and message.count("\n") == 1


def test_colab_extras_and_colab_pins():
    from utils import environment

    extras = environment.read_requirements(ROOT / environment.EXTRAS_FILE)
    assert {r.split("==")[0] for r in extras} == {"keras-tuner", "pydicom", "pylibjpeg", "pylibjpeg-libjpeg"}
    runtime = set(environment.read_requirements(ROOT / "requirements.txt"))
    assert set(extras) <= runtime, "the Colab extras must be the versions that requirements.txt pins"
    colab = (ROOT / "requirements-colab.txt").read_text()
    assert f"-r {environment.EXTRAS_FILE}" in colab
    for pin in ("tensorflow==2.20.0", "keras==3.13.2", "numpy==2.1.3", "pandas==2.2.3"):  # Colab's, Aug 2026
        assert pin in colab.splitlines()
        name, version = pin.split("==")
        assert environment._version_tuple(version) >= environment._version_tuple(environment.MINIMUM_VERSIONS[name])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_opens_with_text_and_a_colab_badge(notebook):
    cells = load(notebook)["cells"]
    repository, branch = REPO_URL.split("github.com/")[1], CONFIG["repository"]["branch"]
    badge = f"{CONFIG['launch_buttons']['colab_url']}/github/{repository}/blob/{branch}/notebooks/{notebook.name}"
    first = "".join(cells[0]["source"])
    assert f"]({badge})" in first, f"{notebook.name}: the first cell needs a badge linking {badge}"
    setup = next(c for c in cells if c["cell_type"] == "code")
    assert "hide-input" in setup["metadata"].get("tags", []), f"{notebook.name}: fold the set-up cell (tag hide-input)"


def test_make_test_executes_each_notebook_once():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "nbval" not in recipe and recipe.count("jupyter-book build") == 1 and "--warningiserror" in recipe


def test_local_branch_of_the_setup_cell(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code_cells(NOTEBOOKS[0])[0], "setup-cell", "exec"), {})
    assert sys.path[0] == str(ROOT)


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-test.txt", "requirements-colab.txt",
                 "requirements-colab-extras.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r "):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9a-z.]*", line), f"{name}: {line!r} is not pinned"
    runtime = (ROOT / "requirements.txt").read_text()
    assert "tensorflow==2.21." in runtime and "keras==3." in runtime
    assert "jupyter-book==1.0.4.post1" in (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements-dev.txt" in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_quotes_the_cache_benchmark():
    from utils.data import MEMORY_CACHE_LIMIT, SHUFFLE_BUFFER_LIMIT

    readme = " ".join((ROOT / "README.md").read_text().split())
    result = json.loads((ROOT / "benchmarks" / "results" / "cache_memory.json").read_text())
    mirror = "training files of the common mirror"
    for quoted in (f"uint8 images and masks, {result['mib_per_example']['uint8']:.2f} MiB per example at 512 px",
                   f"(float32 took {result['mib_per_example']['float32']:.2f})",
                   f"that is {result['disk_cache_gib'][mirror]} GiB of disk",
                   f"validation split's cache ({result['validation_cache_gib'][mirror]} GiB, projected)",
                   f"larger than {MEMORY_CACHE_LIMIT // 2**30} GiB", f"at most {SHUFFLE_BUFFER_LIMIT // 2**20} MiB",
                   f"peaked at {result['full_epoch_peak_rss_gib']} GiB of resident memory"):
        assert quoted in readme, f"README.md should quote {quoted!r} from benchmarks/results/cache_memory.json"
    assert result["mib_per_example"]["uint8"] <= 0.75
