"""How the book is built and checked, tested by running it: `make test`, the publishing workflow's build steps and
.ci/run with stand-in tools that record their calls (fast), and the real `jupyter-book build` with the Makefile's
flags on a tiny book in a temporary folder, with tests/check_book.py after it (about half a minute)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STUB = """#!/usr/bin/env bash
call="$(basename "$0") $*"
echo "$call" >> "$STUB_LOG"
for pattern in $STUB_FAIL; do [[ "$call" == *"$pattern"* ]] && exit 1; done
exit 0
"""
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def stub_workspace(folder):
    """A copy of the Makefile, .ci/run, _config.yml and the workflows in `folder`, whose .venv holds stand-ins for
    python, jupyter-book, ruff and actionlint (and make-stub/ a `make` for .ci/run): each records its call and exits
    0, or 1 when its call contains a word of $STUB_FAIL."""
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "jupyter-book", "ruff", "actionlint"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    (folder / "make-stub").mkdir()
    (folder / "make-stub" / "make").write_text(STUB)
    (folder / "make-stub" / "make").chmod(0o755)
    workflows = [path.relative_to(ROOT).as_posix() for path in (ROOT / ".github" / "workflows").glob("*.yml")]
    for name in ("Makefile", "_config.yml", ".ci/run", *workflows):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, folder / name)
    for requirements in ROOT.glob("requirements*.txt"):  # the prerequisites of .venv/.installed
        (folder / requirements.name).touch()
    stamp = folder / ".venv" / ".installed"
    stamp.touch()
    os.utime(stamp, (stamp.stat().st_mtime + 60,) * 2)  # installed after the requirements were written
    return folder


def run_stubbed(folder, command, fail="", path=None):
    """Run a shell command (as GitHub Actions runs a step: bash -eo pipefail) in the stub workspace; returns the
    result and the recorded calls, each a list of words."""
    log = folder / f"calls-{len(list(folder.glob('calls-*')))}.log"
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(STUB_LOG=str(log), STUB_FAIL=fail, PATH=f"{path or folder / '.venv' / 'bin'}:{os.environ['PATH']}")
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=120)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def book_builds(calls):
    return [call for call in calls if call[0] == "jupyter-book"]


@needs_make
def test_make_test_runs_the_linters_the_unit_tests_one_strict_book_build_then_check_book(tmp_path):
    result, calls = run_stubbed(stub_workspace(tmp_path), "make -s test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(call[:2] == ["ruff", "check"] for call in calls)
    workflows = sorted(f".github/workflows/{path.name}" for path in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert ["actionlint", *workflows] in calls, "actionlint checks every workflow"
    assert ["python", "-m", "pytest", "--durations=15", "tests"] in calls
    assert book_builds(calls) == [["jupyter-book", "build", ".", "--warningiserror", "--keep-going"]], calls
    assert calls.index(["python", "tests/check_book.py"]) > calls.index(book_builds(calls)[0])
    assert not any("nbval" in word for call in calls for word in call), "make test runs each notebook once"


@needs_make
@pytest.mark.parametrize("failing", ["ruff", "actionlint", "pytest", "jupyter-book", "check_book"])
def test_make_test_fails_when_any_part_fails(tmp_path, failing):
    result, calls = run_stubbed(stub_workspace(tmp_path), "make -s test", fail=failing)
    assert result.returncode != 0, f"make test passed although {failing} failed"
    if failing in ("pytest", "jupyter-book"):  # they run side by side: the other one still ran
        assert ["python", "-m", "pytest", "--durations=15", "tests"] in calls and book_builds(calls)


def publishing_build_steps():
    """The `run:` steps of book.yml's job that uploads the site, up to the upload, that build or check the book."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    for job in workflow["jobs"].values():
        uses = [step.get("uses", "") for step in job.get("steps", [])]
        upload = next((i for i, name in enumerate(uses) if name.startswith("actions/upload-pages-artifact@")), None)
        if upload is not None:
            return [step["run"] for step in job["steps"][:upload]
                    if re.search(r"\bmake\b|jupyter-book|check_book", step.get("run", ""))]
    raise AssertionError("book.yml has no job that uploads the site (actions/upload-pages-artifact)")


@needs_make
def test_the_publishing_workflow_builds_and_checks_the_book_exactly_as_make_test_does(tmp_path):
    workspace = stub_workspace(tmp_path)
    _, reference = run_stubbed(workspace, "make -s test")
    steps = publishing_build_steps()
    assert steps, "book.yml builds nothing before it uploads the site"
    published = []
    for step in steps:
        result, calls = run_stubbed(workspace, step)
        assert result.returncode == 0, f"{step!r}: {result.stdout}{result.stderr}"
        published += calls
    assert book_builds(published) == book_builds(reference), "book.yml and make test build the book differently"
    last_build = max(i for i, call in enumerate(published) if call[0] == "jupyter-book")
    assert any("tests/check_book.py" in call for call in published[last_build:]), "book.yml never runs check_book.py"
    for failing in ("jupyter-book", "check_book"):  # a failed build or check stops the job before the upload
        codes = [run_stubbed(workspace, step, fail=failing)[0].returncode for step in steps]
        assert any(codes), f"book.yml's build steps pass although {failing} failed"


def test_ci_script_runs_make_test_then_make_test_colab_and_stops_at_a_failure(tmp_path):
    workspace = stub_workspace(tmp_path)
    result, calls = run_stubbed(workspace, "bash .ci/run", path=workspace / "make-stub")
    expected = [["make", "env"], ["make", "test"], ["make", "test-colab"]]  # env first, so CI times it on its own
    assert result.returncode == 0 and calls == expected, (calls, result.stderr)
    result, calls = run_stubbed(workspace, "bash .ci/run", fail="test", path=workspace / "make-stub")
    assert result.returncode != 0 and calls == expected[:2]


# The real build, on a tiny book made with the project's _config.yml (the same execute settings) and the command
# that `make test` runs, as its stand-in recorded it.


@pytest.fixture(scope="module")
def book_command(tmp_path_factory):
    pytest.importorskip("jupyter_book")  # a build tool: absent from the Colab environment
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    if shutil.which("make") is None or not jupyter_book.exists():
        pytest.skip("needs make and jupyter-book next to this Python")
    _, calls = run_stubbed(stub_workspace(tmp_path_factory.mktemp("make")), "make -s test")
    (build,) = book_builds(calls)
    return [str(jupyter_book), *build[1:]]  # run in the book's folder: `jupyter-book build . <flags>`


def tiny_book(folder, cells):
    """A book in `folder` with the project's _config.yml, an intro page and one notebook of these code cells
    (each a source string, or a (source, tags) pair), in the project's layout (notebooks/, book/)."""
    import nbformat

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = "A tiny book"
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "CITATION.cff", folder)  # the version and the licences in the footer (book/_ext)
    shutil.copytree(ROOT / "book" / "_ext", folder / "book" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    for bibfile in config.get("bibtex_bibfiles", []):
        (folder / bibfile).parent.mkdir(parents=True, exist_ok=True)
        (folder / bibfile).touch()
    (folder / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/01_tiny\n")
    (folder / "book").mkdir(exist_ok=True)
    (folder / "book" / "intro.md").write_text("# A tiny book\n\nOne chapter, in version {{ book_version }}, and "
                                              "a formula, $a^2 + b^2 = c^2$.\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A tiny chapter")])
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (folder / "notebooks").mkdir()
    nbformat.write(notebook, folder / "notebooks" / "01_tiny.ipynb")
    return folder


def build(book, command):
    return subprocess.run(command, cwd=book, capture_output=True, text=True, timeout=300)


def check_book(book):
    return subprocess.run([sys.executable, str(ROOT / "tests" / "check_book.py"), str(book)], capture_output=True,
                          text=True, timeout=120)


PASSING = ["import os", "answer = 6 * 7", ("print(answer)", ["remove-output"]), "answer", "",
           ("print('not run')", ["skip-execution"])]


@pytest.fixture(scope="module")
def passing_book(tmp_path_factory, book_command):
    book = tiny_book(tmp_path_factory.mktemp("passing"), PASSING)
    result = build(book, book_command)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return book


def test_a_failing_cell_fails_the_build_and_check_book_names_it(tmp_path, book_command):
    book = tiny_book(tmp_path, ["value = 1", "raise ValueError('this cell fails')", "print(value)"])
    assert build(book, book_command).returncode != 0, "a notebook whose cell raises built without an error"
    result = check_book(book)
    assert result.returncode != 0
    assert "notebooks/01_tiny.ipynb cell 2 (`raise ValueError('this cell fails')`): raised ValueError" in result.stdout
    assert "notebooks/01_tiny.ipynb cell 3 (`print(value)`) never ran" in result.stdout


def test_a_passing_notebook_builds_and_check_book_passes(passing_book):
    result = check_book(passing_book)
    assert result.returncode == 0, result.stdout


def test_every_page_shows_the_version_and_the_licences_in_its_footer(passing_book):
    version = yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]
    for page in ("book/intro.html", "notebooks/01_tiny.html"):
        html = (passing_book / "_build" / "html" / page).read_text()
        footer = html[html.index('class="extra_footer"'):]
        assert f"Version {version}." in footer, f"{page}: the footer does not show version {version}"
        assert "https://creativecommons.org/licenses/by/4.0/" in footer and "LICENSE-2.0" in footer, page
    intro = (passing_book / "_build" / "html" / "book" / "intro.html").read_text()
    assert f"One chapter, in version {version}, and" in intro, "a page's {{ book_version }} is not the version"


def test_formulas_render_offline_from_the_books_own_mathjax(passing_book):
    import re

    html = passing_book / "_build" / "html"
    intro = (html / "book" / "intro.html").read_text()
    (source,) = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', intro, flags=re.IGNORECASE)
    assert not source.startswith(("http:", "https:", "//")), source
    assert (html / "book" / source.split("?")[0]).resolve() == (html / "_static" / "mathjax" / "tex-chtml.js").resolve()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000  # MathJax itself, not a stub
    online = intro.replace(source, "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js")
    (html / "book" / "intro.html").write_text(online)
    try:  # check_book.py fails a page that loads MathJax from the network
        result = check_book(passing_book)
        assert result.returncode == 1 and "book/intro.html: MathJax is loaded from https://cdn" in result.stdout
    finally:
        (html / "book" / "intro.html").write_text(intro)


def edit_executed_copy(book, edit):
    """Apply `edit` to the cells of the executed copy of the tiny chapter; returns a function that restores it."""
    copy = book / "_build" / "jupyter_execute" / "notebooks" / "01_tiny.ipynb"
    original = copy.read_text()
    notebook = json.loads(original)
    edit(notebook["cells"])
    copy.write_text(json.dumps(notebook))
    return lambda: copy.write_text(original)


def test_check_book_fails_on_an_error_output(passing_book):
    def error(cells):
        cells[4]["outputs"] = [{"output_type": "error", "ename": "RuntimeError", "evalue": "broken", "traceback": []}]

    restore = edit_executed_copy(passing_book, error)
    try:
        result = check_book(passing_book)
    finally:
        restore()
    assert result.returncode != 0 and "notebooks/01_tiny.ipynb cell 4 (`answer`): raised RuntimeError" in result.stdout


def test_check_book_fails_on_a_code_cell_that_never_ran(passing_book):
    def unexecuted(cells):
        cells[2].update(execution_count=None, outputs=[])  # `answer = 6 * 7`, which prints nothing when it runs

    restore = edit_executed_copy(passing_book, unexecuted)
    try:
        result = check_book(passing_book)
    finally:
        restore()
    assert result.returncode != 0 and "notebooks/01_tiny.ipynb cell 2 (`answer = 6 * 7`) never ran" in result.stdout


def test_a_notebook_from_the_execution_cache_passes_and_one_not_in_it_fails(passing_book, book_command, tmp_path):
    """As the publishing workflow builds: _build/.jupyter_cache restored, nothing else. myst-nb 1.4 then writes a
    cached notebook's copy without its outputs, so check_book.py reads the cache; without the cache it fails."""
    book = tmp_path / "book"
    shutil.copytree(passing_book, book, ignore=lambda folder, names: [
        name for name in names if folder.endswith("_build") and name != ".jupyter_cache"])
    result = build(book, book_command)
    assert result.returncode == 0 and "Using cached notebook" in result.stdout, result.stdout[-3000:]
    result = check_book(book)
    assert result.returncode == 0, result.stdout
    # The copy as myst-nb writes it from the cache (no cell ran), and no cache to say otherwise: not executed.
    restore = edit_executed_copy(book, lambda cells: [cell.update(execution_count=None, outputs=[])
                                                      for cell in cells if cell["cell_type"] == "code"])
    shutil.rmtree(book / "_build" / ".jupyter_cache")
    result = check_book(book)
    restore()
    assert result.returncode != 0
    assert "notebooks/01_tiny.ipynb cell 1 (`import os`) and 3 later code cells never ran" in result.stdout
