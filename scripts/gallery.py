"""Copy each chapter's gallery figure into book/images/gallery/ for the introduction's
"what you will build" gallery.

    .venv/bin/python scripts/gallery.py

A chapter marks one figure cell with the tag `gallery`; its first PNG output becomes
book/images/gallery/<chapter>.png. scripts/refresh_notebooks.py runs this after every refresh,
and tests/test_notebooks.py checks that the copies match the notebooks.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "book" / "images" / "gallery"


def gallery_figures() -> dict[str, bytes]:
    """{chapter stem: PNG bytes of its first cell tagged `gallery`}"""
    figures = {}
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if "gallery" in cell.get("metadata", {}).get("tags", []):
                pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
                if pngs:
                    figures[path.stem] = base64.b64decode("".join(pngs[0]))
                    break
    return figures


def main() -> None:
    GALLERY.mkdir(parents=True, exist_ok=True)
    for stem, png in gallery_figures().items():
        target = GALLERY / f"{stem}.png"
        if not target.exists() or target.read_bytes() != png:
            target.write_bytes(png)
            print(f"gallery: wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
