"""The book builds strictly: any Sphinx warning (broken reference, unknown directive, bad toc) fails."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.book
def test_book_builds_with_zero_warnings():
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jb), "build", "--all", "-W", "-n", "--keep-going", str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if re.search(r"\bWARNING\b|\bERROR\b", line)]
    assert result.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    html = ROOT / "_build" / "html"
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        page = (html / "chapters" / f"{path.stem}.html").read_text()
        assert f"/blob/main/chapters/{path.name}" in page, f"{path.stem}: Colab launch link"
        assert 'class="solution dropdown' in page, f"{path.stem}: solutions are folded"
