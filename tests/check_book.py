"""After the book build: every chapter page was executed (has outputs), shows its figures, and has no errors.

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
print("\n".join(problems) or "Every chapter page has its outputs, figures and launch button.")
sys.exit(1 if problems else 0)
