"""The book builds strictly: any Sphinx warning (broken reference, unknown directive, bad toc) fails.

The build itself is the session fixture `built_book` (tests/conftest.py), shared with
tests/test_browser.py and tests/test_links.py, so the book is built once per run.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.book
def test_book_builds_with_zero_warnings(built_book):
    log = built_book["log"]
    warnings = [line for line in log.splitlines() if re.search(r"\bWARNING\b|\bERROR\b", line)]
    assert built_book["returncode"] == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    html = built_book["html"]
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        page = (html / "chapters" / f"{path.stem}.html").read_text()
        assert f"/blob/main/chapters/{path.name}" in page, f"{path.stem}: Colab launch link"
        assert 'class="solution dropdown' in page, f"{path.stem}: solutions are folded"
