"""The licence, citation and release files (tests/check_release.py) and the weekly platform-drift check
(tests/check_colab_pins.py), each tested on a stand-in that fails."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import check_colab_pins  # noqa: E402
import check_release  # noqa: E402


def test_the_licences_citation_and_changelog_are_in_order():
    assert check_release.problems(ROOT) == []


def copy_of_release_files(folder):
    for name in ("LICENSE", "LICENSE-TEXT", "CITATION.cff", "CHANGELOG.md", "_config.yml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    (folder / "book").mkdir()
    shutil.copy(ROOT / "book" / "intro.md", folder / "book" / "intro.md")
    return folder


def test_a_missing_licence_an_invalid_citation_and_an_old_changelog_are_named(tmp_path):
    folder = copy_of_release_files(tmp_path)
    (folder / "LICENSE-TEXT").unlink()
    citation = (folder / "CITATION.cff").read_text()
    (folder / "CITATION.cff").write_text(citation.replace("cff-version: 1.2.0", "cff-version: 1.2.0\ncolour: blue")
                                         .replace('version: "0.1.0"', 'version: "0.2.0"'))
    found = "\n".join(check_release.problems(folder))
    assert "LICENSE-TEXT: missing" in found
    assert "Additional properties are not allowed ('colour' was unexpected)" in found
    assert "CHANGELOG.md: its newest version section (0.1.0) should be CITATION.cff's version 0.2.0" in found
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "check_release.py"), str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "problem(s)" in result.stdout


def manifest_matching_the_pins(folder):
    lines = ["# a pip freeze, as Colab publishes it", "google-colab @ file:///colabtools/dist/google-colab-1.0.0.tar.gz"]
    lines += [f"{name}=={version}" for name, version in check_colab_pins.pins(ROOT / "requirements-colab.txt").items()]
    path = folder / "pip-freeze.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_drift_check_passes_when_colab_has_the_pinned_versions(tmp_path):
    problems, notes = check_colab_pins.report(check_colab_pins.read_manifest(manifest_matching_the_pins(tmp_path)))
    assert problems == [] and notes == []


def test_the_drift_check_fails_on_a_colab_older_than_a_pin_or_the_minimum_and_notes_a_newer_one(tmp_path):
    path = manifest_matching_the_pins(tmp_path)
    text = path.read_text().replace("tensorflow==2.20.0", "tensorflow==2.19.0").replace("keras==", "Keras==")
    path.write_text(text.replace("scipy==", "scipy==9.9.9\n# was scipy==") + "pydicom==3.0.1\n")
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "check_colab_pins.py"), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout
    assert "`tensorflow`: requirements-colab.txt pins 2.20.0, Colab has 2.19.0, which is older" in result.stdout
    assert "`tensorflow`: Colab has 2.19.0, below the book's minimum 2.20" in result.stdout
    assert "`scipy`: Colab has 9.9.9, newer than the oldest tested stack's" in result.stdout  # a note
    text = path.read_text().replace("tensorflow==2.19.0", "tensorflow==2.20.0")
    path.write_text(text.replace("pandas==", "pandas==2.2.1\n# was pandas=="))
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "check_colab_pins.py"), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "`pandas`: requirements-colab.txt pins 2.2.2, Colab has 2.2.1" in result.stdout
    path.write_text(text)
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "check_colab_pins.py"), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "newer than the oldest tested stack" in result.stdout, result.stdout
    assert "`keras`" not in result.stdout  # names compare as pip compares them: Keras is keras
    assert "`pydicom`: Colab now ships 3.0.1" in result.stdout


def test_the_weekly_workflow_reruns_the_book_compares_the_manifest_and_reports_a_failure():
    import yaml

    weekly = yaml.safe_load((ROOT / ".github" / "workflows" / "weekly.yml").read_text())
    assert weekly[True]["schedule"] and "workflow_dispatch" in weekly[True]  # YAML reads the key `on` as True
    runs = {name: [step.get("run", "") for step in job.get("steps", [])] for name, job in weekly["jobs"].items()}
    assert "bash .ci/run" in runs["book"]
    assert any(run.startswith("python tests/check_colab_pins.py") for run in runs["colab-manifest"])
    report = weekly["jobs"]["report"]
    assert report["if"] == "failure()" and set(report["needs"]) == {"book", "colab-manifest"}
    assert report["permissions"] == {"issues": "write"} and "gh issue create" in runs["report"][0]
