"""The chapters run in a Colab-like environment, and installing tinycore there replaces nothing.

Colab already has torch and ipywidgets 7 when a chapter's setup cell runs
`%pip install "tinycore @ git+<repository>@main"`. This test builds such an environment once
(.venv-colab/, from tests/colab_like/requirements.txt, without tinycore; rebuilt when that file
changes), puts a stand-in `google.colab` (tests/colab_like/google/colab/) on the kernel's PYTHONPATH
so that the setup cell takes its install branch, builds a tinycore wheel from this checkout, and runs
every chapter there with nbclient (tests/colab_like/run_chapters.py), the setup cell's git requirement
rewritten to the wheel and nothing else changed. It then checks that every chapter ran, that the
kernel used the Colab-like torch, ipywidgets 7 and the wheel's tinycore, that widget cells displayed
widgets, and that `pip freeze` differs only by tinycore (so pip replaced nothing: not torch, not
ipywidgets). The kernel's pip may not use an index (PIP_NO_INDEX=1): if tinycore ever needed more
than the environment has (a higher torch floor, a new dependency), the install fails here instead of
downloading. Outputs are not compared (nbval does that in the pinned environment).

    .venv/bin/python -m pytest -q tests/test_colab_like.py -p no:nbval -o addopts=""

First run: about a minute more to build .venv-colab. Threads per kernel: OMP_NUM_THREADS (default 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "tests" / "colab_like"
REQUIREMENTS = HERE / "requirements.txt"
VENV = ROOT / ".venv-colab"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".colab-like-stamp"
KERNEL = "colab-like-python3"
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
GIT_REQUIREMENT = f"git+{REPO_URL}@main"
IPYWIDGETS = "7.7.1"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = [pytest.mark.colab_like, pytest.mark.slow]


def sh(*cmd, **kw) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if done.returncode:
        command = " ".join(map(str, cmd))
        raise AssertionError(f"{command} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def stamp() -> str:
    key = REQUIREMENTS.read_bytes() + sys.version.encode()
    return hashlib.sha256(key).hexdigest()


def ensure_venv() -> None:
    """Build .venv-colab unless it exists for exactly these requirements (the stamp is written last)."""
    if STAMP.exists() and STAMP.read_text() == stamp() and PYTHON.exists():
        return
    shutil.rmtree(VENV, ignore_errors=True)
    sh(sys.executable, "-m", "venv", VENV)
    sh(PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS)
    sh(PYTHON, "-m", "ipykernel", "install", "--prefix", VENV, "--name", KERNEL, "--display-name", "Colab-like")
    STAMP.write_text(stamp())


def freeze() -> set[str]:
    return set(sh(PYTHON, "-m", "pip", "freeze", "--all", "--disable-pip-version-check").splitlines())


def version(module: str) -> str:
    return sh(PYTHON, "-c", f"import {module}; print({module}.__version__)").strip()


def committed_widget_cells(path: Path) -> set[str]:
    cells = json.loads(path.read_text())["cells"]
    return {
        str(i)
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and any(WIDGET_VIEW in o.get("data", {}) for o in c.get("outputs", []))
    }


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Build (or reuse) the environment, run every chapter in it once, and return what was seen."""
    ensure_venv()
    subprocess.run([PYTHON, "-m", "pip", "uninstall", "-q", "-y", "tinycore"], capture_output=True)  # a past run's
    before = {"freeze": freeze(), "torch": version("torch"), "ipywidgets": version("ipywidgets")}

    wheels = tmp_path_factory.mktemp("wheel")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", ROOT, "-w", wheels)
    (wheel,) = wheels.glob("tinycore-*.whl")

    report = tmp_path_factory.mktemp("report") / "report.json"
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),  # the stand-in google.colab
        "PIP_NO_INDEX": "1",  # the setup cell's pip may install the wheel, and nothing from an index
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "MPLBACKEND": "Agg",
    }
    env.pop("VIRTUAL_ENV", None)
    run = subprocess.run(
        [PYTHON, HERE / "run_chapters.py", KERNEL, wheel.as_uri(), REPO_URL, report, *CHAPTERS],
        env=env, cwd=HERE, capture_output=True, text=True, timeout=1800,
    )
    print(run.stdout)
    assert run.returncode == 0, f"run_chapters.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    results = {r["chapter"]: r for r in json.loads(report.read_text())}
    after = {"freeze": freeze(), "torch": version("torch"), "ipywidgets": version("ipywidgets")}
    return {"before": before, "after": after, "results": results, "wheel": wheel}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_setup_cell_names_exactly_the_configured_repository(path):
    """The rewrite to the local wheel replaces this requirement, so it must be there exactly once."""
    first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert re.findall(r"git\+\S+?@main", source) == [GIT_REQUIREMENT], f"_config.yml names {REPO_URL}"
    assert "import google.colab" in source and "except ImportError" in source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_runs_in_colab_like_environment(colab, path):
    r = colab["results"][path.name]
    assert r["rewritten"], "the setup cell's git requirement was not found, so it was not replaced by the wheel"
    assert r["error"] is None, (
        f"{path.name} failed in the Colab-like environment:\n{r['error']}\n"
        f"--- the setup cell's output (%pip install of the wheel):\n{r['setup_output']}"
    )
    probe = r["probe"]
    assert probe["google_colab_stand_in"], "the setup cell did not see the stand-in google.colab"
    assert Path(probe["executable"]).parent.parent.resolve() == VENV.resolve(), probe["executable"]
    assert probe["torch"] == colab["before"]["torch"] and probe["ipywidgets"] == IPYWIDGETS, probe
    tinycore_file = Path(probe["tinycore_file"]).resolve()
    assert tinycore_file.is_relative_to(VENV.resolve()), f"tinycore imported from {tinycore_file}, not .venv-colab"
    assert json.loads(probe["tinycore_direct_url"])["url"] == colab["wheel"].as_uri()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_widgets_display_with_ipywidgets_7(colab, path):
    """Every cell whose committed output (ipywidgets 8) is a widget shows a widget with ipywidgets 7 too."""
    expected = committed_widget_cells(path)
    assert expected, f"{path.name} has no committed widget output"
    seen = colab["results"][path.name]["widget_views"]
    assert expected <= set(seen), f"cells {sorted(expected - set(seen), key=int)} displayed no widget"


def test_installing_tinycore_replaced_nothing(colab):
    before, after = colab["before"], colab["after"]
    assert not any(line.lower().startswith("tinycore") for line in before["freeze"])
    assert after["torch"] == before["torch"], "Colab's torch was replaced"
    assert before["ipywidgets"] == after["ipywidgets"] == IPYWIDGETS, "Colab's ipywidgets was replaced"
    added = after["freeze"] - before["freeze"]
    assert [re.sub(r"#sha256=[0-9a-f]+$", "", line) for line in added] == [f"tinycore @ {colab['wheel'].as_uri()}"], (
        f"pip did not change exactly tinycore (installed from the wheel): added {sorted(added)}"
    )
    assert before["freeze"] - after["freeze"] == set(), "pip removed or upgraded something"
