"""The result files of ``benchmarks/`` as the chapters read them: each records what made it (``provenance``:
commit, command, versions, sample version, CPU, date), and one made on another version of the bundled sample is
refused, since its numbers describe other data."""
from __future__ import annotations

import json
from pathlib import Path

from utils.sample import VERSION

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def load(name: str, results: Path = RESULTS) -> dict:
    """``results/NAME.json``; a ValueError when it was made on another sample version (or says nothing of it)."""
    path = Path(results) / f"{name}.json"
    command = f"python benchmarks/{name}.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `{command}` to make it")
    payload = json.loads(path.read_text())
    origin = payload.get("provenance") or {}
    made_on = origin.get("sample_version")
    if made_on != VERSION:
        raise ValueError(
            f"{path} was made on sample version {made_on or '(not recorded)'}, but this book's sample is version "
            f"{VERSION} (utils/sample.py): its numbers describe other data. Run `{origin.get('command', command)}` "
            "again to remake it.")
    return payload


def table(name: str, results: Path = RESULTS) -> str:
    """The Markdown table ``results/NAME.md``, after ``load`` has checked its result file."""
    load(name, results)
    return (Path(results) / f"{name}.md").read_text()
