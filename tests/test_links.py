"""Offline link check of the built book: every internal href/src resolves.

Every relative link and every `#anchor` (on the same page or another) in every page of
_build/html must point at an existing file and, for anchors, an existing id (or <a name>).
External links (anything with a scheme: https:, mailto:, data:, ...) are not fetched.
"""

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINK_ATTRS = {"a": "href", "link": "href", "area": "href", "img": "src", "script": "src",
              "source": "src", "iframe": "src", "video": "src", "audio": "src", "embed": "src"}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        url = attrs.get(LINK_ATTRS.get(tag, ""))
        if url is not None:
            self.links.append((tag, url.strip()))


def book_pages(html: Path) -> list[Path]:
    """Every page of the book: the HTML under _build/html but not Sphinx's _static/_sources files."""
    return sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(html).parts))


def broken_links(html: Path) -> tuple[list[str], int]:
    """(the broken internal links as 'page: tag url (why)', the number of internal links checked)."""
    html = html.resolve()
    parsed: dict[Path, _Page] = {}

    def parse(path: Path) -> _Page:
        if path not in parsed:
            parsed[path] = page = _Page()
            page.feed(path.read_text(encoding="utf-8", errors="replace"))
        return parsed[path]

    broken, checked = [], 0
    for page_path in book_pages(html):
        for tag, url in parse(page_path).links:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url in ("", "#"):
                continue  # external (not fetched), or a link to the top of this page
            checked += 1
            where = f"{page_path.relative_to(html)}: <{tag}> {url}"
            target = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(html):
                broken.append(f"{where} (outside _build/html)")
            elif not target.is_file():
                broken.append(f"{where} (no file {target.relative_to(html)})")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
                broken.append(f"{where} (no id {unquote(parts.fragment)!r} in {target.name})")
    return broken, checked


def test_every_internal_link_resolves(built_book):
    html = built_book["html"]
    pages = book_pages(html)
    assert len(pages) >= 10, f"only {len(pages)} pages in {html}"
    broken, checked = broken_links(html)
    assert checked > 100, f"only {checked} internal links found: is the parser reading the pages?"
    assert not broken, f"{len(broken)} broken internal link(s) of {checked}:\n" + "\n".join(broken)
