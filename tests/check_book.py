"""After the book build: every chapter page was executed (has outputs), shows its figures, and has no errors;
the set-up check page shows the check's table.

Run by `make test` after `jupyter-book build`; exits non-zero with the page at fault.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
problems = []
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    page = ROOT / "_build" / "html" / "notebooks" / f"{notebook.stem}.html"
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
# The set-up check page runs utils.setup_check: its table must be on the page.
setup_page = ROOT / "_build" / "html" / "book" / "teaching" / "setup_check.html"
if not setup_page.exists() or "Kaggle credentials" not in setup_page.read_text():
    problems.append(f"{setup_page.name}: the set-up check's table is missing (was the page executed?)")
print("\n".join(problems) or "Every chapter page has its outputs, figures and launch button; the set-up check ran.")
sys.exit(1 if problems else 0)
