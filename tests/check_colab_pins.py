"""Platform drift: the book's pins of Colab's stack against the versions Colab's published manifest lists.

    python tests/check_colab_pins.py MANIFEST

MANIFEST is a `pip freeze` of Colab's runtime, as googlecolab/backend-info publishes it (pip-freeze.txt); the
weekly workflow (.github/workflows/weekly.yml) downloads it. Compared:

- every pin of requirements-colab.txt (the oldest stack, which `make test-colab` tests) with the manifest's
  version: Colab below a pin means the book is no longer tested on what Colab runs (a problem); Colab above a
  pin is reported, since Colab's version then lies between the oldest stack and the newest (`make test`);
- the book's minimum versions (utils/environment.py, MINIMUM_VERSIONS) with the manifest's: a Colab below them
  can no longer run the book;
- requirements-colab-extras.txt (what the set-up cell installs): a package Colab now ships is reported, since
  the set-up cell may no longer need to install it.

Prints a Markdown report (the workflow adds it to the run's summary) and exits 1 when a pin differs or Colab is
below a minimum; the README (*The weekly check*) says what to do then.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.environment import EXTRAS_FILE, MINIMUM_VERSIONS, _version_tuple, read_requirements  # noqa: E402


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_manifest(path: Path) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines of a pip freeze (URLs and comments skipped)."""
    versions = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+).*", line)
        if match:
            versions[normalise(match[1])] = match[2]
    if not versions:
        raise ValueError(f"{path}: no name==version line found; is it a pip freeze (Colab's pip-freeze.txt)?")
    return versions


def pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a requirements file's pins (``read_requirements``)."""
    return {normalise(name): version for name, version in (r.split("==") for r in read_requirements(path))}


def report(manifest: dict[str, str], root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(problems, notes): lines of Markdown. Problems make the weekly check red."""
    extras = pins(root / EXTRAS_FILE)
    colab = {name: version for name, version in pins(root / "requirements-colab.txt").items() if name not in extras}
    problems, notes = [], []
    for name, pinned in sorted(colab.items()):
        found = manifest.get(name)
        if found is None:
            problems.append(f"- `{name}=={pinned}` is pinned in requirements-colab.txt, but Colab no longer lists it")
        elif _version_tuple(found) < _version_tuple(pinned):
            problems.append(f"- `{name}`: requirements-colab.txt pins {pinned}, Colab has {found}, which is older: "
                            "test the book on it (lower the pin)")
        elif found != pinned:
            notes.append(f"- `{name}`: Colab has {found}, newer than the oldest tested stack's {pinned}")
    for name, minimum in MINIMUM_VERSIONS.items():
        found = manifest.get(normalise(name))
        if found is None or _version_tuple(found) < _version_tuple(minimum):
            problems.append(f"- `{name}`: Colab has {found or 'none'}, below the book's minimum {minimum} "
                            "(utils/environment.py)")
    for name, pinned in sorted(extras.items()):
        if name in manifest:
            notes.append(f"- `{name}`: Colab now ships {manifest[name]} (the set-up cell installs {pinned})")
    return problems, notes


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    problems, notes = report(read_manifest(Path(argv[0])))
    print("## Colab's manifest against the book's pins\n")
    print("\n".join(problems) if problems else "Colab has no package older than requirements-colab.txt pins.")
    if notes:
        print("\nNotes:\n" + "\n".join(notes))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
