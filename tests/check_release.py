"""The book's open-licence and release files, checked by `make lint`:

- LICENSE (Apache-2.0, the code) and LICENSE-TEXT (CC BY 4.0, the text and figures) are the full licence texts;
- CITATION.cff is valid against the Citation File Format 1.2.0 schema (tests/cff-schema-1.2.0.json, from the
  citation-file-format project, CC BY 4.0) and names the repository and the site of _config.yml;
- CHANGELOG.md's newest version section is CITATION.cff's version, the one version of the book;
- the README and the intro page say how to cite the book and which licence covers what.

    python tests/check_release.py [ROOT]

Prints each problem with what to do, and exits 1 if there is any.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

LICENCES = {
    "LICENSE": ("Apache-2.0", "Apache License\n                           Version 2.0, January 2004"),
    "LICENSE-TEXT": ("CC-BY-4.0", "Creative Commons Attribution 4.0 International Public License"),
}


def problems(root: Path) -> list[str]:
    found = []
    for name, (spdx, marker) in LICENCES.items():
        path = root / name
        if not path.exists() or marker not in path.read_text():
            found.append(f"{name}: missing, or not the full {spdx} text; copy the licence text in unchanged")
    citation_path = root / "CITATION.cff"
    if not citation_path.exists():
        return [*found, "CITATION.cff is missing: add one (https://citation-file-format.github.io/)"]
    citation = yaml.safe_load(citation_path.read_text())
    schema = json.loads((Path(__file__).with_name("cff-schema-1.2.0.json")).read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    for error in sorted(validator.iter_errors(citation), key=lambda e: list(e.path)):
        where = "/".join(str(part) for part in error.path) or "(top level)"
        found.append(f"CITATION.cff, {where}: {error.message}")
    config = yaml.safe_load((root / "_config.yml").read_text())
    if citation.get("repository-code") != config["repository"]["url"]:
        url = config["repository"]["url"]
        found.append(f"CITATION.cff: repository-code should be _config.yml's repository.url, {url}")
    if citation.get("url") != config["html"]["baseurl"]:
        found.append(f"CITATION.cff: url should be _config.yml's html.baseurl, {config['html']['baseurl']}")
    if sorted(citation.get("license") or []) != sorted(spdx for spdx, _ in LICENCES.values()):
        found.append("CITATION.cff: license should list CC-BY-4.0 (the text) and Apache-2.0 (the code)")
    version = str(citation.get("version", ""))
    changelog = root / "CHANGELOG.md"
    sections = re.findall(r"^## \[?v?([0-9][^\]\s]*)\]?", changelog.read_text(), re.M) if changelog.exists() else []
    if not sections or sections[0] != version:
        found.append(f"CHANGELOG.md: its newest version section ({sections[0] if sections else 'none'}) should be "
                     f"CITATION.cff's version {version}: add a '## {version}' section (see the README, Releases)")
    for page in ("README.md", "book/intro.md"):
        text = (root / page).read_text()
        if "how to cite" not in text.lower() or "CC BY 4.0" not in text or "Apache-2.0" not in text:
            found.append(f"{page}: needs a 'How to cite' section and the licences (CC BY 4.0 text, Apache-2.0 code)")
    return found


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    listed = problems(root)
    for problem in listed:
        print(problem)
    print(f"{len(listed)} problem(s) in the licence, citation and release files" if listed else
          "Licences, CITATION.cff and CHANGELOG.md are in order.")
    sys.exit(1 if listed else 0)
