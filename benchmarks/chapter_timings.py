"""Chapter run and reading times, the workshop schedules, and the README's figures, all from result files.

Run it after a build of the book (`make book` or `make test`), from the repository root:

    python benchmarks/chapter_timings.py          # or: make timings

1. Run times. Jupyter Book 1 executes each chapter through jupyter-cache (``_build/.jupyter_cache``), whose record
   of a notebook holds ``execution_seconds``. A record is used only when it matches the notebook as it is now (its
   code cells' hash); otherwise the newest record is used and the chapter is marked stale.
2. Reading times: the words of a chapter's markdown cells at ``PROSE_WORDS_PER_MINUTE`` plus those of its code
   cells at ``CODE_WORDS_PER_MINUTE`` (code is read more slowly).

It writes, under ``benchmarks/results/``: ``chapter_timings.json`` (the data), ``chapter_timings.md`` (the table),
``chapter_timings_total.md`` (one sentence), ``schedule_half_day.md`` and ``schedule_two_day.md`` (the workshop
schedules); then it rewrites the README's marked blocks (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``) from
the result files: ``timings`` from ``chapter_timings.json`` and ``cache-memory`` from ``cache_memory.json``.
Each chapter's ``**Time:**`` line (its first cell) is rewritten from ``chapter_timings.json`` too.
``--readme-only`` rewrites the README's blocks and the Time: lines from the result files as they are, without
reading the cache.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "_build" / ".jupyter_cache"
README = ROOT / "README.md"
PROSE_WORDS_PER_MINUTE = 200
CODE_WORDS_PER_MINUTE = 100

# The schedules: (chapter number or activity, exercise numbers, exercise minutes). A chapter's slot is its
# walk-through (its reading time, shortened by the same factor for every chapter when the plan must "fit"), plus its
# run time, plus the exercises, rounded up to 5 minutes; activities have fixed lengths. The exercise minutes and the
# activities' lengths are the plan's choices (planning allowances, not measurements); the instructor guide's
# per-chapter "Exercises:" lines must name the same exercises (tests/test_book.py checks them).
HALF_DAY = {
    "target_minutes": 210,
    "fit": True,  # shorten the walk-throughs to fit the target
    "days": [[
        ("Welcome; everyone runs the set-up check", None, 10),
        (1, "4", 5), (2, "1", 5), (3, "4", 5),
        ("Break", None, 15),
        (4, "3", 5), (5, "1", 5),
        ("Break", None, 10),
        (6, "2", 5), (7, "3", 10),
        ("Slack: catching up, a slow machine, a runtime that restarted", None, 10),
        ("Wrap-up: what full mode and the real data change", None, 5),
    ]],
}
TWO_DAY = {
    "target_minutes": 2 * 7 * 60,
    "fit": True,
    "days": [[
        ("Welcome and set-up check on a GPU runtime", None, 20),
        ("Start the full-mode training run on a GPU runtime, run folder on Drive or Kaggle (book/full_run.md): "
         "`python -m utils.train --run-dir RUN`", None, 15),
        (1, "1-4", 25), (2, "1-4", 25),
        ("Break", None, 15),
        (3, "1-4", 25),
        ("Lunch", None, 60),
        (4, "1-3", 20), (5, "1-4", 30),
        ("Break", None, 15),
        (6, "1-4", 35),
        ("Check the full-mode run: its log and checkpoints; resume it if the runtime went away", None, 10),
        ("Open lab: exercises left over, questions", None, 30),
    ], [
        ("Recap; look at the full-mode run's history (`RUN/log.csv`)", None, 20),
        (7, "1-4", 40),
        ("Break", None, 15),
        (8, "1-3", 30),
        ("Lunch", None, 60),
        (9, "1-3", 30),
        (10, "1-2", 20),
        ("Break", None, 15),
        ("Score the full-mode model on the test split and write its submission, without training: "
         "`python -m utils.evaluate --run-dir RUN`", None, 30),
        ("Open lab: a worker pool on two machines (chapter 10, exercise 3), the real data (chapter 6), own questions",
         None, 40),
        ("Wrap-up and questions", None, 20),
    ]],
}


def planned_exercises(plan: dict) -> dict[int, str]:
    """{chapter: the exercise numbers the plan gives it} (e.g. ``{1: "1-4", ...}``)."""
    return {item: exercises for day in plan["days"] for item, exercises, _ in day if isinstance(item, int)}


def count_words(notebook: Path) -> tuple[int, int]:
    """The words (whitespace-separated) of a notebook's markdown cells and of its code cells."""
    cells = json.loads(notebook.read_text())["cells"]
    words = {"markdown": 0, "code": 0}
    for cell in cells:
        if cell["cell_type"] in words:
            words[cell["cell_type"]] += len("".join(cell["source"]).split())
    return words["markdown"], words["code"]


def chapter_title(notebook: Path) -> str:
    """The notebook's first heading, without the ``#``."""
    first = "".join(json.loads(notebook.read_text())["cells"][0]["source"]).splitlines()[0]
    return first.lstrip("# ").strip()


def execution_records(cache_dir: Path, notebooks: list[Path]) -> dict[str, dict]:
    """For each notebook stem: ``run_seconds``, ``executed_at`` and ``matches_notebook`` from jupyter-cache.

    Notebooks without a record are left out. Raises FileNotFoundError when there is no cache (build the book).
    """
    if not (cache_dir / "global.db").exists():
        raise FileNotFoundError(f"no execution cache in {cache_dir}: build the book first (make book)")
    from jupyter_cache import get_cache

    cache = get_cache(cache_dir)
    records = cache.list_cache_records()
    found = {}
    for notebook in notebooks:
        try:
            record, matches = cache.match_cache_file(str(notebook)), True
        except KeyError:
            own = [r for r in records if Path(r.uri).name == notebook.name]
            if not own:
                continue
            record, matches = max(own, key=lambda r: r.created), False
        seconds = (record.data or {}).get("execution_seconds")
        if seconds is not None:
            found[notebook.stem] = {"run_seconds": round(float(seconds), 1), "matches_notebook": matches,
                                    "executed_at": record.created.strftime("%Y-%m-%d %H:%M")}
    return found


def collect(cache_dir: Path = CACHE, mode: str = "quick") -> dict:
    """Everything the result files hold: per chapter, its words, reading minutes and (if measured) run time."""
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    runs = execution_records(cache_dir, notebooks)
    chapters = []
    for notebook in notebooks:
        prose, code = count_words(notebook)
        reading = prose / PROSE_WORDS_PER_MINUTE + code / CODE_WORDS_PER_MINUTE
        chapters.append({"notebook": notebook.stem, "title": chapter_title(notebook), "prose_words": prose,
                         "code_words": code, "reading_minutes": round(reading, 1),
                         **runs.get(notebook.stem, {"run_seconds": None, "matches_notebook": False})})
    measured = [c["run_seconds"] for c in chapters if c["run_seconds"] is not None]
    return {
        "mode": mode,
        "cpu_cores": os.cpu_count(),
        "prose_words_per_minute": PROSE_WORDS_PER_MINUTE,
        "code_words_per_minute": CODE_WORDS_PER_MINUTE,
        "chapters": chapters,
        "total_reading_minutes": round(sum(c["reading_minutes"] for c in chapters), 1),
        "total_run_seconds": round(sum(measured), 1) if len(measured) == len(chapters) else None,
        "all_current": all(c["matches_notebook"] for c in chapters),
    }


def duration(seconds: float | None) -> str:
    """``75.3`` -> ``"1 min 15 s"``; ``None`` -> ``"not measured"``."""
    if seconds is None:
        return "not measured"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def hours_minutes(minutes: float) -> str:
    """``135`` -> ``"2 h 15 min"``."""
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def timings_table(result: dict) -> str:
    """The per-chapter table (markdown) with a sentence saying how the numbers were obtained."""
    lines = [
        f"Run times: each chapter's execution in the book's last build ({result['mode']} mode, "
        f"{result['cpu_cores']} CPU cores), from its execution cache. Reading times: prose at "
        f"{result['prose_words_per_minute']} words per minute, code at {result['code_words_per_minute']}.",
        "",
        "| chapter | run time | reading time | words (prose + code) |",
        "|---|---|---|---|",
    ]
    for c in result["chapters"]:
        stale = "" if c["matches_notebook"] or c["run_seconds"] is None else " (stale)"
        lines.append(f"| {c['title']} | {duration(c['run_seconds'])}{stale} | {c['reading_minutes']:.0f} min | "
                     f"{c['prose_words']} + {c['code_words']} |")
    lines.append(f"| all chapters | {duration(result['total_run_seconds'])} | "
                 f"{hours_minutes(result['total_reading_minutes'])} | |")
    if not result["all_current"]:
        lines += ["", "(stale): measured on an earlier version of the chapter, or not measured; rebuild the book "
                  "and run `make timings` to refresh."]
    return "\n".join(lines) + "\n"


def total_sentence(result: dict) -> str:
    """One sentence with the total reading and running time, for the introduction to include."""
    run = result["total_run_seconds"]
    ran = (f"executing all of them in {result['mode']} mode took {duration(run)} on a {result['cpu_cores']}-core "
           "CPU machine" if run is not None else "their run times have not all been measured yet")
    reading = hours_minutes(result["total_reading_minutes"])
    return (f"Reading the {len(result['chapters'])} chapters takes about {reading}"
            f" (prose at {result['prose_words_per_minute']} words per minute, code at "
            f"{result['code_words_per_minute']}), and {ran}.\n")


def lay_out(result: dict, plan: dict, pace: float) -> tuple[list[list[tuple]], int]:
    """The plan's slots as (minute of the day, session, walk-through minutes, run seconds, exercises, slot minutes)
    per day, with each chapter's walk-through at ``pace`` times its reading time; and the total minutes."""
    chapters = {int(c["notebook"][:2]): c for c in result["chapters"]}
    days, total = [], 0
    for items in plan["days"]:
        clock, rows = 0, []
        for item, exercises, exercise_minutes in items:
            if isinstance(item, int):
                chapter = chapters[item]
                walk = chapter["reading_minutes"] * pace
                slot = 5 * math.ceil((walk + (chapter["run_seconds"] or 0) / 60 + exercise_minutes) / 5)
                rows.append((clock, chapter["title"], walk, chapter["run_seconds"],
                             f"{exercises} ({exercise_minutes} min)", slot))
            else:
                slot = exercise_minutes
                rows.append((clock, item, None, None, "", slot))
            clock += slot
        days.append(rows)
        total += clock
    return days, total


def schedule_table(result: dict, plan: dict) -> str:
    """A schedule as a markdown table, from the chapters' reading and run times plus the plan's fixed slots.

    With ``plan["fit"]``, each chapter's walk-through is shortened by the same factor (in steps of 5 %) until the
    whole session fits ``plan["target_minutes"]``; the rest of the reading is left for after the session.
    """
    pace = 1.0
    days, total = lay_out(result, plan, pace)
    while plan.get("fit") and total > plan["target_minutes"] and pace > 0.05:
        pace = round(pace - 0.05, 2)
        days, total = lay_out(result, plan, pace)
    several = len(days) > 1
    lines = ["| start | session | walk-through | run | exercises | slot |", "|---|---|---|---|---|---|"]
    for day, rows in enumerate(days, start=1):
        for clock, session, walk, run, exercises, slot in rows:
            start = f"{clock // 60}:{clock % 60:02d}"
            if several:
                start = f"day {day}, {9 + clock // 60:02d}:{clock % 60:02d}"
            walk_text = "" if walk is None else f"{walk:.0f} min"
            run_text = "" if walk is None else duration(run)
            lines.append(f"| {start} | {session} | {walk_text} | {run_text} | {exercises} | {slot} min |")
        if several:
            end = sum(row[5] for row in rows)
            lines.append(f"| day {day}, {9 + end // 60:02d}:{end % 60:02d} | end of day {day} | | | | |")
    target = plan["target_minutes"]
    verdict = "within" if total <= target else f"{hours_minutes(total - target)} over"
    text = f"\n\nIn all: {hours_minutes(total)}, {verdict} the planned {hours_minutes(target)}."
    if pace < 1:
        text += (f" To fit, each walk-through takes {pace:.0%} of the chapter's reading time: the instructor presents"
                 " the key points while learners run the cells, and learners read the rest afterwards.")
    else:
        text += " Each walk-through takes the chapter's full reading time."
    return "\n".join(lines) + text + "\n"


def cache_memory_block(result: dict) -> str:
    """The README's paragraph on what full mode needs, from ``cache_memory.json`` and ``utils.data``'s limits."""
    if str(ROOT) not in sys.path:  # run as a script from benchmarks/: make `utils` importable
        sys.path.insert(0, str(ROOT))
    from utils.data import MEMORY_CACHE_LIMIT, SHUFFLE_BUFFER_LIMIT

    mirror = "training files of the common mirror"
    return (
        "What full mode needs, from `benchmarks/cache_memory.py` (result file `benchmarks/results/cache_memory.md`): "
        f"the `tf.data` cache holds uint8 images and masks, {result['mib_per_example']['uint8']:.2f} MiB per "
        f"example at {result['image_size']} px measured (float32 took {result['mib_per_example']['float32']:.2f}). "
        f"A set larger than {MEMORY_CACHE_LIMIT // 2**30} GiB is cached in a temporary file (under "
        "`$UNET_BOOK_CACHE_DIR` if set, else the system's temporary folder), removed when Python exits: for the "
        f"10,712 {mirror} that is {result['disk_cache_gib'][mirror]} GiB of disk. Memory then holds the "
        f"validation split's cache ({result['validation_cache_gib'][mirror]} GiB, projected) and a shuffle buffer "
        f"of at most {SHUFFLE_BUFFER_LIMIT // 2**20} MiB, besides TensorFlow and the model. One epoch of the "
        "full-mode training pipeline over 10,712 examples (the sample's images repeated; decoding, disk cache, "
        f"shuffle and augmentation, no model) peaked at {result['full_epoch_peak_rss_gib']} GiB of resident "
        "memory.\n"
    )


def ci_block(result: dict) -> str:
    """The README's table of CI's steps, from ``ci_timings.json`` (written by ``ci_timings.py``)."""
    steps = result["steps_seconds"]
    rows = [("`bash .ci/run`, whole", result["total_seconds"])]
    if "make-env" in steps:  # .ci/run creates .venv as a step of its own
        rows.append((f"`make env` (creating `.venv` from `requirements-dev.txt`, "
                     f"{result['venv_bytes'] / 1e9:.1f} GB on disk)", steps["make-env"]))
    rows += [
        (f"`make test` ({'' if 'make-env' in steps else 'creating `.venv`, '}lint, unit tests, the book built with "
         "each chapter once)", steps["make-test"]),
        ("`make test-colab` (creating `.venv-colab`, unit tests, every chapter under nbval on the oldest platform "
         "stack, chapter 6 as on Kaggle)", steps["make-test-colab"]),
    ]
    return (
        f"`bash .ci/run` on a fresh clone of commit {result['commit']} ({result['machine']}, Python "
        f"{result['python']}, the installers' download caches warm), timed by `benchmarks/ci_timings.py` "
        "(result file `benchmarks/results/ci_timings.json`):\n\n"
        "| step | time |\n|---|---|\n" + "".join(f"| {name} | {duration(seconds)} |\n" for name, seconds in rows)
    )


TIME_PREFIX = "**Time:**"


def time_line(chapter: dict, result: dict) -> str:
    """The ``**Time:**`` line at the top of a chapter, from its row of ``chapter_timings.json``: never typed."""
    cpu = (result.get("provenance") or {}).get("cpu")
    machine = f"{result['cpu_cores']} cores of {cpu}" if cpu else f"{result['cpu_cores']} CPU cores"
    ran = (f"the notebook ran in {duration(chapter['run_seconds'])} in the book's last build ({result['mode']} "
           f"mode, {machine})" if chapter["run_seconds"] is not None else "its run time has not been measured yet")
    return (f"{TIME_PREFIX} about {max(1, round(chapter['reading_minutes']))} minutes to read; {ran}. "
            "The workshop schedules give each chapter's slot.")


def write_time_lines(result: dict, notebooks: Path = ROOT / "notebooks") -> list[str]:
    """Rewrite each chapter's ``**Time:**`` line (in its first cell) from ``result``; returns the notebooks changed."""
    import nbformat

    changed = []
    for chapter in result["chapters"]:
        path = notebooks / f"{chapter['notebook']}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        lines = notebook.cells[0].source.split("\n")
        rows = [i for i, line in enumerate(lines) if line.startswith(TIME_PREFIX)]
        if len(rows) != 1:
            raise ValueError(f"{path}: its first cell needs exactly one line starting with {TIME_PREFIX}")
        end = rows[0] + 1  # the line may wrap onto the next lines of its paragraph: replace the paragraph
        while end < len(lines) and lines[end].strip():
            end += 1
        new = lines[:rows[0]] + [time_line(chapter, result)] + lines[end:]
        if new != lines:
            notebook.cells[0].source = "\n".join(new)
            nbformat.write(notebook, path)
            changed.append(path.name)
    return changed


def readme_blocks() -> dict[str, str]:
    """The text of each marked README block, rendered from the result files as they are now."""
    timings = json.loads((RESULTS / "chapter_timings.json").read_text())
    cache = json.loads((RESULTS / "cache_memory.json").read_text())
    ci = json.loads((RESULTS / "ci_timings.json").read_text())
    return {"timings": timings_table(timings), "cache-memory": cache_memory_block(cache), "ci": ci_block(ci)}


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the part between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by ``content``."""
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no block <!-- {name}:start --> ... <!-- {name}:end -->; add the markers")
    return pattern.sub(lambda m: m.group(1) + content + m.group(2), text)


def write_results(result: dict) -> None:
    """Write the JSON (with its ``provenance``) and the markdown files that the book includes."""
    from timing import provenance

    payload = {**result, "provenance": provenance()}
    (RESULTS / "chapter_timings.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "chapter_timings.md").write_text(timings_table(result))
    (RESULTS / "chapter_timings_total.md").write_text(total_sentence(result))
    (RESULTS / "schedule_half_day.md").write_text(schedule_table(result, HALF_DAY))
    (RESULTS / "schedule_two_day.md").write_text(schedule_table(result, TWO_DAY))


def rendered_files(result: dict) -> dict[str, str]:
    """What each markdown result file should hold for ``result`` (the tests compare them with the files)."""
    return {"chapter_timings.md": timings_table(result), "chapter_timings_total.md": total_sentence(result),
            "schedule_half_day.md": schedule_table(result, HALF_DAY),
            "schedule_two_day.md": schedule_table(result, TWO_DAY)}


def main(argv: list[str] | None = None) -> None:
    """Collect, write the result files, and rewrite the README's blocks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="the jupyter-cache folder of the build")
    parser.add_argument("--mode", default=os.environ.get("UNET_BOOK_MODE", "quick"), help="the build's run mode")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite the README from the result files")
    args = parser.parse_args(argv)
    if not args.readme_only:
        result = collect(args.cache, args.mode)
        write_results(result)
        print(timings_table(result) + "\n" + total_sentence(result))
        if not result["all_current"]:
            print("Some chapters were not measured on their current version: rebuild the book, then run this again.")
    text = README.read_text()
    for name, content in readme_blocks().items():
        text = replace_block(text, name, content)
    README.write_text(text)
    changed = write_time_lines(json.loads((RESULTS / "chapter_timings.json").read_text()))
    print(f"Wrote the result files in {RESULTS}, the README's marked blocks, and the Time: lines of "
          f"{len(changed)} chapters.")


if __name__ == "__main__":
    main()
