"""The notebook contract: what every chapter must satisfy besides executing (nbval checks that)."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def text(output):
    value = output.get("text", "")
    return "".join(value) if isinstance(value, list) else value


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_there_are_chapters_and_names_are_numbered():
    assert len(CHAPTERS) >= 4
    for path in CHAPTERS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = toc_files()
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in listed, f"{path.name} is missing from _toc.yml"
    for entry in listed:
        assert (ROOT / f"{entry}.ipynb").exists() or (ROOT / f"{entry}.md").exists(), entry


def test_config_names_the_repository_once_with_branch_main_and_colab():
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "sphinx_exercise" in CONFIG["sphinx"]["extra_extensions"]
    assert (ROOT / "_config.yml").read_text().count(REPO_URL) == 1


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_setup_cell_installs_from_the_configured_repository_only_in_colab(path):
    first_code = next(c for c in cells(path) if c["cell_type"] == "code")
    text = source(first_code)
    assert "import google.colab" in text and "except ImportError" in text, "the install must be guarded"
    installs = re.findall(r'%pip install -q "tinycore @ git\+(\S+?)@main"', text)
    assert installs == [REPO_URL], f"setup cell installs {installs}, _config.yml names {REPO_URL}"
    assert text.index("import google.colab") < text.index("%pip install"), "install only inside Colab"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_exercises_follow_the_pattern(path):
    nb = cells(path)
    markdown = "\n".join(source(c) for c in nb if c["cell_type"] == "markdown")
    labels = re.findall(r"```\{exercise-start\}[^\n]*\n:label: (\S+)", markdown)
    assert len(labels) >= 3, f"{path.name} has {len(labels)} exercises, needs at least 3"
    for directive in ("exercise-end", "solution-end"):
        assert markdown.count("{" + directive + "}") == len(labels), directive
    assert re.findall(r"```\{solution-start\} (\S+)\n:class: dropdown", markdown) == labels

    checks = [c for c in nb if c["cell_type"] == "code" and re.fullmatch(r"checks\.\w+\(\w+\)\s*", source(c))]
    assert len(checks) == len(labels), "one check cell (only `checks.name(name)`) per exercise"
    for cell in checks:
        assert "raises-exception" in cell["metadata"].get("tags", []), source(cell)
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        assert [e["ename"] for e in errors] == ["NotImplementedError"], f"stored output of {source(cell)!r}"

    solutions = [c for c in nb if c["cell_type"] == "code" and source(c).startswith("#@title Solution")]
    assert len(solutions) == len(labels)
    for cell, check in zip(solutions, checks):
        assert cell["metadata"].get("cellView") == "form", "solutions are collapsed in Colab"
        assert source(check).strip() in source(cell), "the solution runs the same checker"
        printed = "".join(text(o) for o in cell["outputs"] if o["output_type"] == "stream")
        assert printed.startswith("✅"), f"the stored solution output should be the success line, got {printed!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "run scripts/refresh_notebooks.py"
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "outputs come from one top-to-bottom run"
    for cell in code:
        assert not source(cell).rstrip().endswith(";"), "nbval ignores `;`: write `_ = f()`"
        if "widgets" in source(cell) and any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell["outputs"]):
            assert "nbval-ignore-output" in cell["metadata"].get("tags", []), "widget output must be ignored by nbval"
    headings = [line for c in nb["cells"] if c["cell_type"] == "markdown" for line in source(c).splitlines() if line.startswith("# ")]
    assert len(headings) == 1, f"one H1 title per chapter, found {headings}"
    assert "{cite" in "".join(source(c) for c in nb["cells"]), "a chapter cites its references"


def test_the_introductions_gallery_shows_current_figures():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import gallery

    figures = gallery.gallery_figures()
    assert len(figures) >= 4, "tag one figure cell per chapter with `gallery`"
    intro = (ROOT / "book" / "intro.md").read_text()
    for stem, png in figures.items():
        path = ROOT / "book" / "images" / "gallery" / f"{stem}.png"
        assert path.exists() and path.read_bytes() == png, f"run scripts/gallery.py ({stem} is stale)"
        assert f"images/gallery/{stem}.png" in intro, f"{stem}'s figure is not in the gallery"
