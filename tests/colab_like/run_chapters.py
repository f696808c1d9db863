"""Execute chapters in the Colab-like environment; run by tests/test_colab_like.py with .venv-colab's python.

    run_chapters.py KERNEL_NAME WHEEL REPO_URL REPORT.json CHAPTER.ipynb ...

Each chapter is read, its setup cell's `git+REPO_URL@main` requirement is replaced by the local tinycore
wheel (nothing else changes), and it is executed with nbclient in a fresh kernel (cells tagged
`raises-exception` may raise, as nbclient allows). After the last cell a probe (not part of the
notebook) reports from inside the kernel which python, torch, ipywidgets and tinycore it used.
The per-chapter results are written to REPORT.json; the test makes the assertions.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROBE = """\
import importlib.metadata as _md, json as _json, sys as _sys
import ipywidgets as _w, torch as _t, tinycore as _tc
_dist = _md.distribution("tinycore")
print("@@PROBE@@" + _json.dumps({
    "executable": _sys.executable,
    "torch": _t.__version__,
    "ipywidgets": _w.__version__,
    "tinycore_file": _tc.__file__,
    "tinycore_direct_url": _dist.read_text("direct_url.json"),
    "google_colab_stand_in": getattr(_sys.modules.get("google.colab"), "IS_STAND_IN", False),
}))
"""


def setup_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def widget_views(outputs) -> int:
    return sum(WIDGET_VIEW in o.get("data", {}) for o in outputs)


def text_of(outputs):
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


def run(path: Path, kernel_name: str, wheel: str, repo_url: str) -> dict:
    nb = nbformat.read(path, as_version=4)
    cell = setup_cell(nb)
    git_req = f"git+{repo_url}@main"
    result = {"chapter": path.name, "setup_source": cell.source, "rewritten": cell.source.count(git_req) == 1}
    cell.source = cell.source.replace(git_req, wheel)
    for c in nb.cells:  # no committed output may stand in for one this run did not make
        if c.cell_type == "code":
            c.outputs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:  # not the repository: `import tinycore` must find the installed one
        client = NotebookClient(nb, timeout=300, kernel_name=kernel_name, resources={"metadata": {"path": cwd}})
        try:
            with client.setup_kernel():
                for index, c in enumerate(nb.cells):
                    client.execute_cell(c, index)
                probe = nbformat.v4.new_code_cell(PROBE)
                nb.cells.append(probe)  # in memory only; nbclient stores each cell back at its index
                client.execute_cell(probe, len(nb.cells) - 1)
            result["error"] = None
            line = next(l for l in text_of(probe.outputs).splitlines() if l.startswith("@@PROBE@@"))
            result["probe"] = json.loads(line[len("@@PROBE@@"):])
        except Exception as err:  # CellExecutionError (its message has the cell and traceback) and the rest
            detail = str(err) if type(err).__name__ == "CellExecutionError" else traceback.format_exc()
            result["error"] = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(err).__name__}: {detail}")[-6000:]
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["setup_output"] = re.sub(r"\x1b\[[0-9;]*m", "", text_of(cell.get("outputs", [])))[-3000:]
    result["widget_views"] = {  # cell index -> number of widget views it displayed
        str(i): n for i, c in enumerate(nb.cells) if c.cell_type == "code" and (n := widget_views(c.outputs))
    }
    return result


def main(argv: list[str]) -> int:
    kernel_name, wheel, repo_url, report, *chapters = argv
    results = []
    for chapter in chapters:
        results.append(run(Path(chapter), kernel_name, wheel, repo_url))
        r = results[-1]
        print(f"{r['chapter']}: {r['seconds']} s{'' if r['error'] is None else ' ERROR'}", flush=True)
        Path(report).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
