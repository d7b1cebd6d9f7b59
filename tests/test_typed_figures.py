"""The typed-figure check (tests/typed_figures.py) catches what the reviews found, and the book's pages pass it."""
from pathlib import Path

import pytest
from typed_figures import Sources, output_text, typed, typed_in_notebook

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sources():
    return Sources()


def notebook(prose: str, printed: str = "") -> dict:
    cells = [{"cell_type": "markdown", "source": prose}]
    if printed:
        cells.append({"cell_type": "code", "source": "print(...)",
                      "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]})
    return {"cells": cells}


@pytest.mark.parametrize("prose, printed", [
    # the cases of the reviews: a baseline typed as 0.79 where the run prints 0.797, ...
    ("The all-empty baseline (about 0.79) was beaten.", "all-empty baseline 0.797"),
    # ... a benchmark said to take "about 20 min" that took 27.9 ...
    ("The grid benchmark takes about 20 min.", ""),
    # ... a speed-up typed beside the run that measured another ...
    ("XLA trains 2.5x faster here.", "speed-up 2.2x"),
    # ... and a typed chapter run time.
    ("This notebook runs in 1 min 12 s.", "done in 71.9 s"),
])
def test_a_typed_figure_is_caught(sources, prose, printed, monkeypatch):
    # The result files' text as the review found it (the grid took 27.9 min), not whatever today's files hold:
    # their reading times ("20 min") would otherwise source the typed duration by chance.
    monkeypatch.setattr(sources, "result_text", "| grid_search | 27.9 min |")
    assert typed_in_notebook(notebook(prose, printed), sources), prose


@pytest.mark.parametrize("prose, printed", [
    ("The all-empty baseline (0.797 above) was beaten.", "all-empty baseline 0.797"),
    ("XLA trains 2.2x faster here.", "speed-up 2.2x"),
    ("The winner scored 0.8679; predicting nothing scores about 0.78.", ""),  # sourced_figures.toml
    ("Half the real masks cover less than 0.82 % of the image.", ""),  # utils.sample.REAL_STATISTICS
    ("Keras 3.13 interpolates the masks.", ""),  # a pinned version
    ("**Time:** about 25 minutes to read; the notebook ran in 18 s.", ""),  # checked by its own test
    ("A formula $p = 0.37$, a call `f(0.25)` and a [link](https://doi.org/10.1007/x).", ""),
])
def test_a_sourced_figure_passes(sources, prose, printed):
    assert typed_in_notebook(notebook(prose, printed), sources) == []


def test_a_result_files_table_sources_a_duration_only_as_a_whole(sources, monkeypatch):
    monkeypatch.setattr(sources, "result_text", "| grid_search | 27.9 min |\n| make test | 20 min 3 s |")
    assert typed("The grid took 27.9 min; make test 20 min 3 s.", "", sources) == []
    assert typed("make test takes 20 min.", "", sources) == ["20 min (duration)"]


def test_outputs_are_read_from_streams_and_rich_results():
    cell = {"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": {"text/plain": "0.125"}},
                                             {"output_type": "stream", "text": ["a 2.5x ", "gain"]}]}
    assert output_text({"cells": [cell]}) == "0.125\na 2.5x gain"


@pytest.mark.parametrize("page", sorted((ROOT / "book").rglob("*.md")), ids=lambda p: p.name)
def test_the_book_pages_quote_no_typed_figure(sources, page):
    """The chapters (with their outputs) are checked by check_book.py after the build; the pages here."""
    assert typed(page.read_text(), "", sources) == [], (
        f"{page.relative_to(ROOT)}: read these figures from a result file or a run, or name their source in "
        "tests/sourced_figures.toml")
