"""The book's structure: notebooks clean and listed, one repository URL, pinned environment, Colab set-up."""
import importlib.util
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
def test_setup_cell_ends_with_a_statement(notebook):
    """A cell that ends with an expression shows its value: prepare()'s empty list was a stray `[]` on every page."""
    import ast

    last = ast.parse(code_cells(notebook)[0]).body[-1]
    assert not isinstance(last, ast.Expr), f"{notebook.name}: the set-up cell's last line shows its value on the page"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_uses_the_repository_url_from_config(notebook):
    urls = re.findall(r'REPO_URL = "([^"]+)"', code_cells(notebook)[0])
    assert urls == [REPO_URL], f"{notebook.name}: set REPO_URL to repository.url of _config.yml ({REPO_URL})"


def test_config_sets_the_launch_buttons_and_the_execution_cache():
    # Configuration only: tests/test_book_build.py builds a book with this _config.yml, and check_book.py there
    # finds the Colab launch button on the page.
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["launch_buttons"]["binderhub_url"]
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["execute"]["execute_notebooks"] == "cache"


def run_setup_cell_as_colab(notebook, monkeypatch, tmp_path, missing=(), versions=None, platform="colab"):
    """Run a notebook's set-up cell as Colab (or Kaggle) would, offline: a stand-in google.colab module (or Kaggle's
    KAGGLE_KERNEL_RUN_TYPE variable), a fake clone, and pip commands recorded instead of run. ``missing``
    distributions look uninstalled; ``versions`` overrides what others report. Returns the recorded commands."""
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
    if platform == "colab":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("UNET_BOOK_DIR", str(tmp_path / "book"))
    exec(compile(code_cells(notebook)[0], "setup-cell", "exec"), {})
    assert sys.path[0] == str(tmp_path / "book")
    clone = calls.pop(0)
    assert clone[:2] == ["git", "clone"] and REPO_URL in clone and "main" in clone
    return calls


@pytest.mark.parametrize("platform", ["colab", "kaggle"])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_setup_installs_only_what_colab_lacks(notebook, platform, monkeypatch, tmp_path):
    from utils import environment

    extras = environment.read_requirements(ROOT / environment.EXTRAS_FILE)
    missing = [r.split("==")[0] for r in extras]
    (install,) = run_setup_cell_as_colab(notebook, monkeypatch, tmp_path, missing=missing, platform=platform)
    assert install[1:4] == ["-m", "pip", "install"] and "-q" not in install  # pip's output (and prompts) stay visible
    constraints_file = install[install.index("-c") + 1]
    assert install[install.index("-c") + 2:] == extras
    for requirement in install[4:]:
        assert requirement.split("==")[0].lower() not in environment.NEVER_INSTALL
    constraints = Path(constraints_file).read_text().split()
    for name in ("tensorflow", "keras", "numpy", "pandas"):  # held at what is installed: pip cannot replace them
        assert f"{name}=={environment.installed_version(name)}" in constraints


@pytest.mark.parametrize("platform", ["colab", "kaggle"])
def test_colab_setup_run_twice_installs_nothing(platform, monkeypatch, tmp_path):
    assert run_setup_cell_as_colab(NOTEBOOKS[0], monkeypatch, tmp_path, platform=platform) == []


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
    # The older of Colab's (Aug 2026) and Kaggle's (Aug 2026) versions: the oldest stack the book supports
    for pin in ("tensorflow==2.20.0", "keras==3.13.2", "numpy==2.0.2", "pandas==2.2.2", "scikit-learn==1.6.1"):
        assert pin in colab.splitlines()
        name, version = pin.split("==")
        minimum = environment.MINIMUM_VERSIONS.get(name, "0")
        assert environment._version_tuple(version) >= environment._version_tuple(minimum)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_opens_with_text_and_a_colab_badge(notebook):
    cells = load(notebook)["cells"]
    repository, branch = REPO_URL.split("github.com/")[1], CONFIG["repository"]["branch"]
    badge = f"{CONFIG['launch_buttons']['colab_url']}/github/{repository}/blob/{branch}/notebooks/{notebook.name}"
    first = "".join(cells[0]["source"])
    assert f"]({badge})" in first, f"{notebook.name}: the first cell needs a badge linking {badge}"
    kaggle = f"https://kaggle.com/kernels/welcome?src={REPO_URL}/blob/{branch}/notebooks/{notebook.name}"
    assert f"]({kaggle})" in first, f"{notebook.name}: the first cell needs an Open in Kaggle link to {kaggle}"
    assert "![" not in first, f"{notebook.name}: a badge image needs the network; use a text link"

    setup = next(c for c in cells if c["cell_type"] == "code")
    assert "hide-input" in setup["metadata"].get("tags", []), f"{notebook.name}: fold the set-up cell (tag hide-input)"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and the history")
def test_a_workshop_pins_the_book_to_a_release_tag(monkeypatch, tmp_path):
    """The set-up cell with REPO_REF set to a tag clones that tag, not main's newest commit: Colab's branch, offline
    (a stand-in google.colab, the clone redirected to a copy of this repository with a tag and a later commit)."""
    from utils import environment

    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=Book", "-c", "user.email=book@example.org", "-C", str(origin)]
    subprocess.run(["git", "clone", "-q", str(ROOT), str(origin)], check=True)
    subprocess.run([*git, "tag", "v9.9.9"], check=True)
    (origin / "AFTER_THE_TAG").write_text("a commit on main after the tag\n")
    subprocess.run([*git, "add", "AFTER_THE_TAG"], check=True)
    subprocess.run([*git, "commit", "-qm", "after the tag"], check=True)
    tagged = subprocess.run([*git, "rev-parse", "v9.9.9^{commit}"], capture_output=True, text=True).stdout.strip()
    for name, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{origin}.insteadOf",
                        "GIT_CONFIG_VALUE_0": REPO_URL, "UNET_BOOK_DIR": str(tmp_path / "book")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    prepared = []
    monkeypatch.setattr(environment, "prepare", lambda book_dir, install_missing: prepared.append(book_dir))
    cell = code_cells(NOTEBOOKS[0])[0]
    assert 'REPO_REF = "main"' in cell, "the set-up cell names the ref it clones in REPO_REF"
    exec(compile(cell.replace('REPO_REF = "main"', 'REPO_REF = "v9.9.9"'), "setup-cell", "exec"), {})
    book = tmp_path / "book"
    head = subprocess.run(["git", "-C", str(book), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert head == tagged and not (book / "AFTER_THE_TAG").exists(), "the clone is not the tagged commit"
    assert sys.path[0] == str(book) and prepared == [book]


def test_local_branch_of_the_setup_cell(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
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


def test_lock_files_hold_every_pin_and_are_named_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    for lock, pins in (("requirements-lock.txt", ("requirements.txt", "requirements-dev.txt", "requirements-test.txt")),
                       ("requirements-colab-lock.txt", ("requirements-colab.txt", "requirements-test.txt"))):
        assert f"-c {lock}" in makefile
        locked = dict(line.split("==") for line in (ROOT / lock).read_text().splitlines()
                      if line and not line.startswith("#"))
        locked = {name.lower().replace("_", "-"): version for name, version in locked.items()}
        for name in pins:
            for line in (ROOT / name).read_text().splitlines():
                line = line.split("#")[0].strip()
                if line and not line.startswith("-r "):
                    package, version = line.split("==")
                    found = locked.get(package.lower().replace("_", "-"))
                    assert found == version, f"{lock} disagrees with {name}: {line}"


def test_readme_names_the_two_commands():
    # What .ci/run and the Makefile's targets do is run in tests/test_book_build.py.
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme


def load_chapter_timings():
    """benchmarks/chapter_timings.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("chapter_timings", ROOT / "benchmarks" / "chapter_timings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_figures_come_from_the_result_files():
    """Every marked block of the README is what benchmarks/chapter_timings.py renders from benchmarks/results."""
    readme = (ROOT / "README.md").read_text()
    blocks = load_chapter_timings().readme_blocks()
    assert set(re.findall(r"<!-- ([a-z-]+):start -->", readme)) == set(blocks)
    for name, content in blocks.items():
        assert f"<!-- {name}:start -->\n{content}<!-- {name}:end -->" in readme, (
            f"README.md's {name} block no longer matches its result file: run "
            "`python benchmarks/chapter_timings.py --readme-only` (or `make timings` after a build)")
    cache = json.loads((ROOT / "benchmarks" / "results" / "cache_memory.json").read_text())
    assert cache["mib_per_example"]["uint8"] <= 0.75


def test_timing_tables_and_schedules_come_from_their_json():
    timings = load_chapter_timings()
    result = json.loads((ROOT / "benchmarks" / "results" / "chapter_timings.json").read_text())
    assert [c["notebook"] for c in result["chapters"]] == [nb.stem for nb in NOTEBOOKS]
    for name, content in timings.rendered_files(result).items():
        assert (ROOT / "benchmarks" / "results" / name).read_text() == content, (
            f"benchmarks/results/{name} differs from what chapter_timings.json gives: run `make timings`")


def test_each_chapters_time_line_comes_from_the_timings_file():
    """The **Time:** line under each chapter's objectives is written by `make timings`, never typed."""
    timings = load_chapter_timings()
    result = json.loads((ROOT / "benchmarks" / "results" / "chapter_timings.json").read_text())
    for chapter in result["chapters"]:
        first = "".join(load(ROOT / "notebooks" / f"{chapter['notebook']}.ipynb")["cells"][0]["source"])
        line = next((line for line in first.splitlines() if line.startswith(timings.TIME_PREFIX)), None)
        assert line == timings.time_line(chapter, result), (
            f"{chapter['notebook']}: its Time: line is not the one chapter_timings.json gives: run "
            "`python benchmarks/chapter_timings.py --readme-only`")


def test_the_instructor_guide_names_the_exercises_the_schedules_plan():
    timings = load_chapter_timings()
    guide = (ROOT / "book" / "teaching" / "instructor_guide.md").read_text()
    sections = dict(re.findall(r"(?ms)^### (\d+)\..*?\n(.*?)(?=^##)", guide))
    half, two = timings.planned_exercises(timings.HALF_DAY), timings.planned_exercises(timings.TWO_DAY)
    for chapter in range(1, len(NOTEBOOKS) + 1):
        (line,) = re.findall(r"\*Exercises:\*(.*?)(?:\n\n|$)", sections[str(chapter)], flags=re.S)
        expected = f"half-day {half[chapter]}" if chapter in half else "not in the half-day"
        assert expected in line, f"chapter {chapter}: the guide's exercises differ from the half-day plan ({line})"
        assert f"two-day {two[chapter]}" in line, f"chapter {chapter}: the guide differs from the two-day plan"
        for part in ("*Questions:*", "*Check:*", "*Misconception:*"):
            assert part in sections[str(chapter)], f"chapter {chapter}: the guide has no {part}"


def test_readme_links_the_site_and_shows_the_badges():
    readme = (ROOT / "README.md").read_text()
    site = CONFIG["html"]["baseurl"]
    owner, name = REPO_URL.removeprefix("https://github.com/").split("/")
    assert site == f"https://{owner}.github.io/{name}/", "html.baseurl: the GitHub Pages site of repository.url"
    assert f"<{site}>" in readme, f"README.md should link the site {site}"
    workflow = f"{REPO_URL}/actions/workflows/book.yml"
    assert f"[![book]({workflow}/badge.svg)]({workflow})" in readme
    colab = CONFIG["launch_buttons"]["colab_url"]
    notebook = f"{colab}/github/{owner}/{name}/blob/{CONFIG['repository']['branch']}/notebooks/{NOTEBOOKS[0].name}"
    assert f"[![Open In Colab]({colab}/assets/colab-badge.svg)]({notebook})" in readme
    assert "make timings" in readme


def test_workflows_are_configured_to_publish_the_book_and_test_pull_requests():
    # The configuration: tests/test_book_build.py runs book.yml's build steps and compares them with `make test`.
    book = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = book[True]  # YAML reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    steps = [step for job in book["jobs"].values() for step in job["steps"]]
    assert any(step.get("run") == "make book" for step in steps), "the site is built with the README's command"
    assert any(step.get("uses", "").startswith("actions/deploy-pages@") for step in steps)
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert any(step.get("with", {}).get("path") == "_build/.jupyter_cache" for step in steps)
    assert book["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert "pull_request" in ci[True]
    ci_steps = ci["jobs"]["test"]["steps"]
    assert any(step.get("run") == "bash .ci/run" for step in ci_steps)
    assert any(step.get("with", {}).get("python-version") == "3.11" for step in ci_steps)


def test_teaching_part_is_in_the_book():
    pages = ["instructor_guide", "schedules", "setup_check", "troubleshooting", "cheat_sheet"]
    assert all(f"book/teaching/{page}" in TOC_FILES for page in pages)
    check_page = (ROOT / "book" / "teaching" / "setup_check.md").read_text()
    assert "```{code-cell}" in check_page and "from utils.setup_check import report" in check_page
    schedules = (ROOT / "book" / "teaching" / "schedules.md").read_text()
    for name in ("chapter_timings.md", "schedule_half_day.md", "schedule_two_day.md"):
        assert f"```{{include}} ../../benchmarks/results/{name}" in schedules


def test_run_times_come_from_the_execution_cache(tmp_path):
    """A cached chapter gives its execution time; one changed since is marked stale; one never run is left out."""
    import nbformat

    get_cache = pytest.importorskip("jupyter_cache").get_cache  # a build tool: absent from the Colab environment
    timings = load_chapter_timings()
    notebooks = []
    for stem in ("01_a", "02_b", "03_c"):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print('{stem}')")])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / f"{stem}.ipynb")
        notebooks.append(tmp_path / f"{stem}.ipynb")
    cache = get_cache(tmp_path / "cache")
    for path, seconds in zip(notebooks[:2], (1.25, 80.0)):
        cache.cache_notebook_file(str(path), data={"execution_seconds": seconds}, check_validity=False)
    changed = nbformat.read(notebooks[1], as_version=4)
    changed.cells[0].source = "print('changed')"
    nbformat.write(changed, notebooks[1])
    records = timings.execution_records(tmp_path / "cache", notebooks)
    assert records["01_a"]["run_seconds"] == 1.2 and records["01_a"]["matches_notebook"]
    assert records["02_b"]["run_seconds"] == 80.0 and not records["02_b"]["matches_notebook"]
    assert "03_c" not in records
    assert timings.duration(80.0) == "1 min 20 s" and timings.duration(None) == "not measured"
    with pytest.raises(FileNotFoundError, match="build the book first"):
        timings.execution_records(tmp_path / "nothing", notebooks)


def test_the_running_environment_holds_exactly_the_locked_versions():
    # make env and make test-colab install with uv, constrained by the lock files: every package installed in the
    # environment running the tests must be locked, at the locked version (the installers themselves excepted).
    import importlib.metadata

    lock = "requirements-colab-lock.txt" if Path(sys.prefix).name == ".venv-colab" else "requirements-lock.txt"
    if Path(sys.prefix).name not in (".venv", ".venv-colab"):
        pytest.skip(f"not one of the Makefile's environments: {sys.prefix}")

    def normalise(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {normalise(name): version for name, version in
              (line.split("==") for line in (ROOT / lock).read_text().splitlines() if "==" in line)}
    installed = {normalise(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    installers = {"pip", "setuptools", "wheel", "uv"}
    wrong = {name: (version, locked.get(name)) for name, version in installed.items()
             if name not in installers and locked.get(name) != version}
    assert not wrong, f"installed (version, {lock}'s version): {wrong}"
