"""utils.results: a chapter refuses a benchmark result file made on another version of the bundled sample, and
every result file the chapters read records what made it."""
import json

import pytest

from utils import results
from utils.sample import VERSION

# The result files of the benchmarks that the chapters read with utils.results (the timing files are written by
# benchmarks/chapter_timings.py and ci_timings.py after a book build, with their own provenance).
READ_BY_CHAPTERS = ("cache_memory", "context_block", "data_pipeline", "grid_search", "training_throughput")
PROVENANCE = {"commit", "command", "versions", "sample_version", "cpu", "device", "date"}


def write(directory, name, provenance):
    payload = {"numbers": [1, 2]} | ({"provenance": provenance} if provenance is not None else {})
    (directory / f"{name}.json").write_text(json.dumps(payload))
    (directory / f"{name}.md").write_text("| a table |\n")


def test_a_result_of_this_sample_version_loads(tmp_path):
    write(tmp_path, "bench", {"sample_version": VERSION, "command": "python benchmarks/bench.py"})
    assert results.load("bench", tmp_path)["numbers"] == [1, 2]
    assert results.table("bench", tmp_path) == "| a table |\n"


@pytest.mark.parametrize("provenance", [{"sample_version": "0", "command": "python benchmarks/bench.py --x 1"}, {},
                                        None])
def test_a_result_of_another_or_no_sample_version_is_refused(tmp_path, provenance):
    write(tmp_path, "bench", provenance)
    with pytest.raises(ValueError, match=rf"bench\.json was made on sample version .* this book's sample is "
                                         rf"version {VERSION}.*python benchmarks/bench\.py"):
        results.table("bench", tmp_path)


def test_a_missing_result_names_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.json is missing: run `python benchmarks/nothing\.py`"):
        results.load("nothing", tmp_path)


@pytest.mark.parametrize("name", READ_BY_CHAPTERS)
def test_every_result_file_records_its_provenance(name):
    origin = results.load(name)["provenance"]
    assert PROVENANCE <= set(origin), f"{name}.json lacks {PROVENANCE - set(origin)}"
    assert origin["commit"] and origin["cpu"] and origin["command"].startswith(f"python benchmarks/{name}.py")
    assert origin["versions"]["tensorflow"] and origin["versions"]["keras"]
    assert f"sample version {VERSION}" in (results.RESULTS / f"{name}.md").read_text()
