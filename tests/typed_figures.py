"""Figures in the book's prose must come from somewhere: a cell's output, a result file, or a named source.

A *figure* here is a number in prose (markdown cells and pages, outside code, math and links) of one of three
kinds: a decimal with two or more decimals (``0.78``, ``22.15``), a duration (``27.9 min``, ``12 hours``,
``1 min 2 s``), or a factor (``2.2x``). A figure is sourced when

- a decimal: its digits appear as a number in the page's own cell outputs, in a result file under
  ``benchmarks/results`` (a table, or a JSON value equal to it), as the leading part of a version that a
  requirements file pins, among the real data's statistics in ``utils.sample``, or in
  ``tests/sourced_figures.toml`` (figures from papers, the
  competition and the platforms, each with its source);
- a duration or a factor: the same text (number and unit) appears in the page's outputs, in a result file's
  table, or in ``tests/sourced_figures.toml``.

Anything else is typed: it will drift from the run it describes. ``check_book.py`` runs this over every chapter
(with its executed outputs) and every page of ``book/`` after the build; ``tests/test_typed_figures.py`` checks
that it catches the typed figures the reviews found. Each chapter's **Time:** line is checked on its own
(``test_each_chapters_time_line_comes_from_the_timings_file``) and is skipped here.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (check_book.py) from anywhere: utils must import
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SOURCED = Path(__file__).with_name("sourced_figures.toml")

UNIT = r"(?:s|seconds?|min|minutes?|h|hours?|ms)\b"
DURATION = re.compile(rf"(?<![\w.,])(\d+(?:\.\d+)?\s?{UNIT}(?:\s\d+(?:\.\d+)?\s?{UNIT})*)")
FACTOR = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?x)(?!\s*\d)\b")
DECIMAL = re.compile(r"(?<![\w.,])(\d+\.\d{2,})(?![\d.]*\d)")
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def prose(markdown: str) -> str:
    """Markdown without code, math, roles, links, HTML tags, front matter and the **Time:** line."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)
    text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", text)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]*\$", "", text)
    text = re.sub(r"\{\w+\}`[^`]*`", "", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    text = re.sub(r"\]\([^)]*\)|https?://\S+|<[^>]+>", "", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("**Time:**"))


def figures(text: str) -> list[tuple[str, str]]:
    """(kind, figure) for each figure in ``text`` (already ``prose``)."""
    found = [("duration", m.group(1)) for m in DURATION.finditer(text)]
    found += [("factor", m.group(1)) for m in FACTOR.finditer(text)]
    found += [("decimal", m.group(1)) for m in DECIMAL.finditer(text)]
    return found


def output_text(notebook: dict) -> str:
    """The text of every output of the notebook's code cells: streams, plain-text and markdown results."""
    parts = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append("".join(output["text"]))
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in output.get("data", {}):
                    parts.append("".join(output["data"][kind]))
    return "\n".join(parts)


def numbers(text: str) -> set[str]:
    return {token.replace(",", "") for token in NUMBER.findall(text)}


class Sources:
    """What a figure may come from, other than the page's own outputs."""

    def __init__(self):
        # Run times and measurements; the workshop schedules' slot lengths (20 min, ...) are plans, not runs.
        self.result_text = "\n".join(path.read_text() for path in sorted(RESULTS.glob("*.md"))
                                     if not path.name.startswith("schedule_"))
        self.result_values: list[float] = []
        for path in sorted(RESULTS.glob("*.json")):
            self._floats(json.loads(path.read_text()))
        self.pins = set()
        for path in ROOT.glob("requirements*.txt"):
            for version in re.findall(r"[=<>~]=\s*([\d.]+)", path.read_text()):
                parts = version.split(".")
                self.pins |= {".".join(parts[:n]) for n in range(2, len(parts) + 1)}
        self.sourced = tomllib.loads(SOURCED.read_text())["figures"] if SOURCED.exists() else {}
        # The real data's measured statistics, which the chapters compare the sample with.
        from utils.sample import REAL_SHARES, REAL_STATISTICS

        self.result_values += [float(v) for quantiles in REAL_STATISTICS.values() for v in quantiles.values()]
        self.result_values += [float(v) for v in REAL_SHARES.values()]

    def _floats(self, value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            self.result_values.append(float(value))
        elif isinstance(value, dict):
            for item in value.values():
                self._floats(item)
        elif isinstance(value, list):
            for item in value:
                self._floats(item)
        elif isinstance(value, str):
            self.result_values += [float(t) for t in numbers(value)]

    def equals_a_result(self, figure: str) -> bool:
        return float(figure) in self.result_values

    def has(self, kind: str, figure: str, outputs: str) -> bool:
        if figure in self.sourced:
            return True
        if kind == "decimal":
            digits = figure.replace(",", "")
            return (digits in numbers(outputs) or digits in numbers(self.result_text) or self.equals_a_result(digits)
                    or digits in self.pins)
        pattern = re.escape(figure).replace(r"\ ", r"\s?")  # the whole figure: "20 min" is not in "20 min 3 s"
        return any(re.search(rf"(?<![\w.]){pattern}(?!\s?\d)", text) for text in (outputs, self.result_text))


def typed(markdown: str, outputs: str, sources: Sources) -> list[str]:
    """The figures of ``markdown`` that nothing sources: the typed ones."""
    return [f"{figure} ({kind})" for kind, figure in figures(prose(markdown))
            if not sources.has(kind, figure, outputs)]


def typed_in_notebook(notebook: dict, sources: Sources) -> list[str]:
    markdown = "\n\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    return typed(markdown, output_text(notebook), sources)
