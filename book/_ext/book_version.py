"""Sphinx extension: the book's version and licences in every page's footer, read from CITATION.cff.

CITATION.cff holds the version in one place; this sets Sphinx's ``version`` and ``release`` from it, writes the
footer (the licences of the text and of the code, and the version), and offers ``{{ book_version }}`` to the
pages (MyST substitutions).
"""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEXT_LICENCE = ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/", "LICENSE-TEXT")
CODE_LICENCE = ("Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0", "LICENSE")


def book_version(root: Path = ROOT) -> str:
    citation = yaml.safe_load((root / "CITATION.cff").read_text())
    return str(citation["version"])


def footer(version: str) -> str:
    text, code = (f'<a href="{url}">{name}</a>' for name, url, _ in (TEXT_LICENCE, CODE_LICENCE))
    return (f"<p>Version {version}. Text and figures: {text}; code: {code} "
            "(the repository's LICENSE-TEXT and LICENSE). How to cite: CITATION.cff.</p>")


def _configure(app, config):
    version = book_version()
    config.version = config.release = version
    config.html_theme_options = {**config.html_theme_options, "extra_footer": footer(version)}
    config.myst_substitutions = {**config.myst_substitutions, "book_version": version}


def setup(app):
    app.connect("config-inited", _configure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
