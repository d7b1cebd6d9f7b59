"""Time CI as CI runs it: a fresh clone of the committed ``main``, then ``bash .ci/run``.

    .venv/bin/python benchmarks/ci_timings.py [--keep]

Clones this repository's ``main`` into a temporary folder, runs ``bash .ci/run`` there (``make test``, then
``make test-colab``; its output goes to ``benchmarks/results/ci_run.log``), and writes
``benchmarks/results/ci_timings.json`` with each step's wall time and the commit. The chapter run times of that
build (its execution cache) replace ``chapter_timings.json`` and the schedules, and the README's marked blocks are
rewritten (``chapter_timings.py``). A failing CI run is reported and nothing but the log is written.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapter_timings  # noqa: E402
from timing import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def steps_from_log(text: str) -> dict[str, float]:
    """Seconds per step from the ``ci-step NAME start|end EPOCH`` lines that ``.ci/run`` prints."""
    found = re.findall(r"^ci-step (\S+) (start|end) (\d+)$", text, re.M)
    marks = {(name, edge): int(epoch) for name, edge, epoch in found}
    return {name: marks[(name, "end")] - marks[(name, "start")] for name, edge in marks if edge == "start"
            and (name, "end") in marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "main"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    clone = Path(tempfile.mkdtemp(prefix="ci-clone-")) / "repo"
    subprocess.run(["git", "clone", "--quiet", "--branch", "main", str(ROOT), str(clone)], check=True)
    log_path = RESULTS / "ci_run.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("UNET_BOOK", "SIIM_"))}
        code = subprocess.run(["bash", ".ci/run"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                              env=environment).returncode
    total = time.monotonic() - start
    steps = steps_from_log(log_path.read_text())
    print(f"bash .ci/run exited {code} after {total:.0f} s; steps: {steps}; log: {log_path}")
    if code == 0:
        origin = provenance()
        # The disk that `make env` took: every file under the clone's .venv, as `du -s --apparent-size` counts.
        venv_bytes = sum(f.lstat().st_size for f in (clone / ".venv").rglob("*") if not f.is_dir())
        result = {"commit": commit, "exit_code": code, "total_seconds": round(total),
                  "steps_seconds": steps, "venv_bytes": venv_bytes, "cpu_cores": os.cpu_count(),
                  "machine": f"{platform.machine()}, {origin['device']}",
                  "python": platform.python_version(), "provenance": origin}
        (RESULTS / "ci_timings.json").write_text(json.dumps(result, indent=2) + "\n")
        chapters = chapter_timings.collect(clone / "_build" / ".jupyter_cache", "quick")
        chapter_timings.write_results(chapters)
        chapter_timings.main(["--readme-only"])
    if args.keep:
        print(f"the clone: {clone}")
    else:
        shutil.rmtree(clone.parent, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
