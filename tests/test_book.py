"""The book's structure: notebooks clean and listed, one repository URL, pinned environment, Colab set-up."""
import json
import re
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
        matches = [p for p in (ROOT / Path(entry).parent).glob(Path(entry).name + ".*") if p.suffix in (".md", ".ipynb")]
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


def test_colab_branch_of_the_setup_cell(monkeypatch, tmp_path):
    """Run the set-up cell as Colab would, offline: a stand-in google.colab module, recorded commands."""
    source = code_cells(NOTEBOOKS[0])[0]
    calls = []
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(source, "setup-cell", "exec"), {})
    clone, install = calls
    assert clone[:2] == ["git", "clone"] and REPO_URL in clone and "main" in clone
    assert install[1:5] == ["-m", "pip", "install", "-q"] and install[-1].endswith("requirements.txt")
    assert sys.path[0] == "/content/pneumothorax-unet"


def test_local_branch_of_the_setup_cell(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code_cells(NOTEBOOKS[0])[0], "setup-cell", "exec"), {})
    assert sys.path[0] == str(ROOT)


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
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
