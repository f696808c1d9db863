"""Re-execute chapters and store their outputs: the only way outputs in chapters/ are made.

    .venv/bin/python scripts/refresh_notebooks.py                     # every chapter
    .venv/bin/python scripts/refresh_notebooks.py chapters/02_layernorm.ipynb

Runs in the pinned environment (requirements.txt) with two threads and the kernel started afresh
for each notebook, stores widget state (so the static book can show widgets), and prints each
chapter's run time. Cells tagged `raises-exception` may raise; any other error stops the refresh.
CI then re-executes every chapter with nbval and fails on any output that differs. Figures of
cells tagged `gallery` are copied to book/images/gallery/ (scripts/gallery.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import gallery  # scripts/gallery.py, beside this file
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2  # the CI machine has two cores; printed results are rounded so that they do not depend on it


def refresh(path: Path, timeout: int = 120) -> float:  # as nbval's --nbval-cell-timeout; cells take < 15 s
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapters/*.ipynb")
    parser.add_argument("--draft-threads", type=int, default=THREADS,
                        help="threads for a draft run beside other work; never for committed outputs")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # inherited by every kernel started below
        os.environ[var] = str(args.draft_threads)
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    os.environ["TINYCORE_QUIET"] = "1"  # no progress lines from tinycore.train in committed outputs
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    for path in paths:
        try:
            seconds = refresh(path)
        except (CellTimeoutError, DeadKernelError) as error:
            # Seen rarely here: the kernel's ZMQ socket fails ("Socket operation on non-socket"), its reply
            # never arrives and the cell times out. A fresh kernel has always run the chapter normally.
            print(f"{path.name}: {type(error).__name__}; running it again in a fresh kernel", flush=True)
            seconds = refresh(path)
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    gallery.main()  # the introduction's gallery shows figures from the refreshed outputs
    return 0


if __name__ == "__main__":
    sys.exit(main())
