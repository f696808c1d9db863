import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a screen

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
HTML = BUILD / "html"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "_static", "book", "chapters")
BUILD_RECORD = BUILD / "book-build.json"  # the log and exit status of the last strict build


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in BOOK_SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        newest = max([newest, *(p.stat().st_mtime for p in files if ".ipynb_checkpoints" not in p.parts)])
    return newest


def _build_is_current() -> bool:
    return (
        BUILD_RECORD.is_file()
        and (HTML / "index.html").is_file()
        and BUILD_RECORD.stat().st_mtime >= _newest_source_mtime()
    )


@pytest.fixture(scope="session")
def built_book() -> dict:
    """The book built strictly once per run (`jupyter-book build --all -W -n --keep-going .`).

    Rebuilds only when _build/html or the record of its build is missing, or older than any source
    (_config.yml, _toc.yml, _static/, book/, chapters/); otherwise reuses the record of the last strict build.
    Returns {"returncode", "log", "seconds", "rebuilt", "html"}.
    """
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / "book-build.lock", "w") as lock:  # pytest-xdist workers build once, in turn
        fcntl.flock(lock, fcntl.LOCK_EX)
        rebuilt = not _build_is_current()
        if rebuilt:
            BUILD_RECORD.unlink(missing_ok=True)
            jb = Path(sys.executable).with_name("jupyter-book")
            start = time.monotonic()
            result = subprocess.run(
                [str(jb), "build", "--all", "-W", "-n", "--keep-going", str(ROOT)],
                capture_output=True, text=True, timeout=900, cwd=ROOT,
            )
            record = {"returncode": result.returncode, "log": result.stdout + result.stderr,
                      "seconds": round(time.monotonic() - start, 1)}
            BUILD_RECORD.write_text(json.dumps(record))
        record = json.loads(BUILD_RECORD.read_text())
    return {**record, "rebuilt": rebuilt, "html": HTML}
