"""After the book build: every page's notebook ran to its end (each code cell has an execution count and no error
output), every chapter page shows its figures and its Colab launch button and no traceback, no prose quotes a
typed figure (``typed_figures.py``: each comes from the chapter's outputs, a result file or a named source), and
the set-up check page shows the check's table.

Usage: ``python tests/check_book.py [BOOK]``: BOOK is the book's folder (default: this repository), checked in
BOOK/_build as `jupyter-book build BOOK` wrote it. Run by `make test` and `make book` after the build; exits
non-zero, naming the page (and cell) at fault.

The executed notebooks are the copies Jupyter Book writes to _build/jupyter_execute. A notebook taken from the
execution cache is written there without its outputs (myst-nb 1.x writes the notebook it read, not the cached one
it rendered): a copy in which no cell ran is looked up in the execution cache, _build/.jupyter_cache, which holds
only notebooks that ran without an error. Two cell tags are honoured: `skip-execution` (the cell is not run) and
`raises-exception` (its error is the lesson). A cell that ran and printed nothing (imports, assignments) is fine.
"""
import json
import re
import sys
from pathlib import Path

import nbformat
from typed_figures import Sources, typed, typed_in_notebook

ROOT = Path(__file__).resolve().parent.parent


def rendered_notebook(copy, cache_dir):
    """The executed notebook the page was rendered from: the copy in jupyter_execute, or the cached notebook."""
    notebook = nbformat.read(copy, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip()]
    if code and all(cell.get("execution_count") is None for cell in code) and cache_dir.is_dir():
        from jupyter_cache import get_cache

        try:
            _, notebook = get_cache(str(cache_dir)).merge_match_into_notebook(notebook)
        except KeyError:  # not in the cache: the notebook was not executed
            pass
    return notebook


def cell_problems(page, notebook):
    """What went wrong in the notebook's code cells: an error output, or cells that never ran."""
    problems, never_ran = [], []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        where = f"{page} cell {index} (`{cell.source.strip().splitlines()[0][:60]}`)"
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and "raises-exception" not in tags:
                problems.append(f"{where}: raised {output.get('ename')}: {output.get('evalue', '')[:200]}")
        if cell.get("execution_count") is None and "skip-execution" not in tags:
            never_ran.append(where)
    if never_ran:
        later = f" and {len(never_ran) - 1} later code cells" if len(never_ran) > 1 else ""
        problems.append(f"{never_ran[0]}{later} never ran (no execution count): the execution stopped or was skipped")
    return problems


def source_of(book, docname):
    """The page's source file in the book (a notebook or a MyST markdown notebook), or None."""
    return next((book / f"{docname}{suffix}" for suffix in (".ipynb", ".md") if (book / f"{docname}{suffix}").exists()),
                None)


def check(book):
    build = book / "_build"
    executed = build / "jupyter_execute"
    problems = []
    # Every page that has code cells: the executed copy Jupyter Book wrote for it.
    for copy in sorted(executed.rglob("*.ipynb")):
        docname = copy.relative_to(executed).with_suffix("").as_posix()
        source = source_of(book, docname)
        if source is None:  # a copy left from an earlier build of a page that is gone
            continue
        notebook = rendered_notebook(copy, build / ".jupyter_cache")
        problems += cell_problems(source.relative_to(book).as_posix(), notebook)
    sources = Sources()
    for notebook in sorted((book / "notebooks").glob("*.ipynb")):
        if not (executed / "notebooks" / notebook.name).exists():
            problems.append(f"notebooks/{notebook.name} was not executed (no copy in {executed})")
        else:
            ran = rendered_notebook(executed / "notebooks" / notebook.name, build / ".jupyter_cache")
            for figure in typed_in_notebook(ran, sources):
                problems.append(f"notebooks/{notebook.name}: the figure {figure} in the prose is in no output of the "
                                "chapter, no result file and not in tests/sourced_figures.toml: print it from the run "
                                "or the result file, or name its source there")
        page = build / "html" / "notebooks" / f"{notebook.stem}.html"
        if not page.exists():
            problems.append(f"{page} was not built")
            continue
        html = page.read_text()
        source = json.loads(notebook.read_text())
        plots = sum("plt.show()" in "".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code")
        images = html.count('src="../_images/')
        if images < plots:
            problems.append(f"{page.name}: {plots} cells draw a figure but the page shows {images} images")
        if "colab.research.google.com/github/" not in html:
            problems.append(f"{page.name}: no Colab launch button")
        if "Traceback (most recent call last)" in html or 'class="output traceback' in html:
            problems.append(f"{page.name}: shows an error")
    for page in sorted((book / "book").rglob("*.md")):
        for figure in typed(page.read_text(), "", sources):
            problems.append(f"{page.relative_to(book)}: the figure {figure} is in no result file and not in "
                            "tests/sourced_figures.toml")
    # Formulas render offline: MathJax comes from the book's own _static folder, never from a CDN.
    for page in sorted((build / "html").rglob("*.html")):
        for source in re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page.read_text(), flags=re.IGNORECASE):
            if source.startswith(("http:", "https:", "//")):
                problems.append(f"{page.relative_to(build / 'html')}: MathJax is loaded from {source}, which needs "
                                "the network (is sphinx-mathjax-offline in _config.yml's extra_extensions?)")
            elif not (page.parent / source.split("?")[0]).exists():
                problems.append(f"{page.relative_to(build / 'html')}: MathJax's {source} is not in the built site")
    # The set-up check page runs utils.setup_check: its table must be on the page.
    if (book / "book" / "teaching" / "setup_check.md").exists():
        setup_page = build / "html" / "book" / "teaching" / "setup_check.html"
        if not setup_page.exists() or "Kaggle credentials" not in setup_page.read_text():
            problems.append(f"{setup_page.name}: the set-up check's table is missing (was the page executed?)")
    return problems


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(f"usage: {sys.argv[0]} [BOOK]  (the book's folder; default {ROOT})")
    book = Path(sys.argv[1]).resolve() if len(sys.argv) == 2 else ROOT
    problems = check(book)
    print("\n".join(problems) or "Every page's notebook ran to its end; every chapter page has its figures and launch "
          "button; the set-up check ran.")
    sys.exit(1 if problems else 0)
