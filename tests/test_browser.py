"""The built book in a real browser: Debian's headless Chromium driven by Playwright, fully offline.

_build/html is served on 127.0.0.1 (a free port, http.server in a thread). The JavaScript the pages
load from CDNs (MathJax, RequireJS, the Jupyter widget manager) is served from local copies of the
npm packages (.cache/npm/, fetched by scripts/install-browser-deps); every other external request
is blocked. On every page of the book: it loads with no console error, no page error and no failed
request to the local server; its maths is typeset by MathJax without TeX errors; every image loaded;
every exercise solution is folded and unfolds on a click; a chapter's Colab launch link points at
the repository and branch of _config.yml; a page that stores widget state renders its widgets.
Screenshots of a few pages go to _build/screenshots/.
"""

import functools
import http.server
import os
import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
NPM_CACHE = ROOT / ".cache" / "npm"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# npm packages served in place of the CDNs (the same list as scripts/install-browser-deps):
NPM_PACKAGES = {"mathjax": "3.2.2", "@jupyter-widgets/html-manager": "1.0.6", "requirejs": "2.3.4"}
SCREENSHOT_PAGES = {"book/intro.html", "chapters/00_setup.html", "chapters/02_layernorm.html"}
TIMEOUT_MS = 10_000
# Errors the pinned theme itself raises on every page, whatever the book contains (upstream, not ours):
KNOWN_THEME_ERRORS = [
    # sphinx-book-theme + sphinx-thebe declare `const THEBE_JS_URL` in two <script> tags
    r"page error: Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme logs this with console.error when no light/dark mode is stored yet
    r"console: Got invalid theme mode: \. Resetting to auto\.",
    # @jupyter-widgets/html-manager 1.0.6 requests its icon fonts relative to the page
    # (chapters/@jupyter-widgets/html-manager/dist/<hash>.woff2), not its CDN, so they 404 on the real site too
    r"(HTTP 404: |request failed: |console: Failed to load resource: .*404.*)"
    r"http://127\.0\.0\.1:\d+/[^ ]*@jupyter-widgets/html-manager/dist/\w+\.(woff2?|ttf|eot|svg)",
    r"console: Failed to load resource: the server responded with a status of 404 \(File not found\) "
    r"\{'url': 'http://127\.0\.0\.1:\d+/[^ ]*@jupyter-widgets/html-manager/dist/\w+\.(woff2?|ttf|eot|svg)'",
    # html-manager 1.0.6 calls MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3 (no Hub)
    r"page error: Cannot read properties of undefined \(reading 'Queue'\)",
]

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def _toc_files(toc) -> list[str]:
    files = [toc["root"]] if "root" in toc else []
    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            files += _toc_files({"root": entry["file"], **({"parts": [{"chapters": entry["sections"]}]}
                                                          if "sections" in entry else {})})
    return files


# Every page of the book: the toc's documents, plus Sphinx's own pages.
PAGES = [f"{name}.html" for name in _toc_files(TOC)] + ["index.html", "genindex.html", "search.html"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason=f"{CHROMIUM} is missing (run scripts/install-browser-deps); in CI (CI set) this test always runs",
)


def _local_file(url: str) -> Path | None:
    """The local copy of a CDN URL the pages request, or None if we have none."""
    parts = urlsplit(url)
    if parts.netloc == "cdnjs.cloudflare.com":
        m = re.fullmatch(r"/ajax/libs/require\.js/([\d.]+)/require(?:\.min)?\.js", parts.path)
        if m and m.group(1) == NPM_PACKAGES["requirejs"]:
            return NPM_CACHE / f"requirejs@{m.group(1)}" / "package" / "require.js"
    if parts.netloc == "cdn.jsdelivr.net":
        m = re.fullmatch(r"/npm/((?:@[^/]+/)?[^/@]+)@([^/]+)/(.+)", parts.path)
        if m and m.group(1) in NPM_PACKAGES:
            name, wanted, path = m.groups()
            pinned = NPM_PACKAGES[name]
            if pinned == wanted or pinned.startswith(wanted + "."):  # "mathjax@3" is served by 3.2.2
                return NPM_CACHE / f"{name}@{pinned}" / "package" / path
    return None


CONTENT_TYPES = {".js": "application/javascript", ".css": "text/css", ".woff": "font/woff",
                 ".woff2": "font/woff2", ".ttf": "font/ttf", ".eot": "application/vnd.ms-fontobject",
                 ".svg": "image/svg+xml", ".json": "application/json"}


@pytest.fixture(scope="module")
def site(built_book):
    """The base URL of _build/html served on 127.0.0.1 at a free port."""
    html = built_book["html"]
    assert (html / "index.html").is_file(), f"the book did not build:\n{built_book['log'][-3000:]}"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if any(not (NPM_CACHE / f"{n}@{v}" / "package" / "package.json").is_file() for n, v in NPM_PACKAGES.items()):
        subprocess.run([str(ROOT / "scripts" / "install-browser-deps")], check=True, timeout=600)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright") if not os.environ.get(
        "CI") else __import__("playwright.sync_api", fromlist=["sync_playwright"])
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _strip_requirejs_sri(route):
    """Serve a book page with the integrity (SRI) attribute of its cdnjs RequireJS tag removed: the pages
    pin cdnjs's minified RequireJS by hash, and npm ships only the unminified file of the same release."""
    response = route.fetch()
    body = re.sub(r'(<script\b[^>]*?)\s+integrity="[^"]*"([^>]*\bsrc="https://cdnjs\.cloudflare\.com/ajax/libs/'
                  r'require\.js/[^"]*")', r"\1\2", response.text())
    route.fulfill(response=response, body=body)


class Visit:
    """One page loaded in a fresh browser context, with everything the browser complained about."""

    def __init__(self, browser, site: str, page_name: str):
        self.site, self.errors, self.served, self.blocked = site, [], [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.context.route("**/*", self._route)  # routes added later take precedence:
        self.context.route(re.compile(re.escape(site) + r"[^?#]*\.html([?#].*)?$"), _strip_requirejs_sri)
        self.page = page = self.context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text} {m.location}"))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: r.url.startswith(site) and self.errors.append(
            f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.url.startswith(site) and r.status >= 400 and self.errors.append(
            f"HTTP {r.status}: {r.url}"))
        page.goto(site + page_name, wait_until="load")
        page.wait_for_load_state("networkidle")

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.site):
            return route.continue_()
        local = _local_file(url)
        if local is None or not local.is_file():
            self.blocked.append(url)
            return route.abort("blockedbyclient")
        self.served.append(url)
        route.fulfill(status=200, body=local.read_bytes(), headers={
            "Content-Type": CONTENT_TYPES.get(local.suffix, "application/octet-stream"),
            "Access-Control-Allow-Origin": "*"})


@pytest.fixture
def visit(browser, site):
    opened = []

    def open_page(page_name: str) -> Visit:
        opened.append(Visit(browser, site, page_name))
        return opened[-1]

    yield open_page
    for v in opened:
        v.context.close()


def test_every_built_page_is_visited(built_book):
    html = built_book["html"]
    built = {str(p.relative_to(html)) for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(html).parts)}
    assert built == set(PAGES), f"built but not in the toc: {sorted(built - set(PAGES))}; missing: {sorted(set(PAGES) - built)}"


@pytest.mark.parametrize("page_name", PAGES)
def test_page_in_browser(visit, page_name):
    v = visit(page_name)
    page = v.page
    if page_name == "index.html":  # a redirect to the root document
        page.wait_for_url(re.compile(re.escape(TOC["root"]) + r"\.html"))
    report = {"page": page_name}

    # Maths: every .math element typeset by MathJax, with no TeX error.
    n_math = page.locator(".math").count()
    if n_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        untypeset = page.evaluate("() => [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))")
        assert not untypeset, f"{page_name}: {len(untypeset)} of {n_math} maths not typeset, e.g. {untypeset[:3]}"
        assert page.locator("mjx-container").count() >= n_math
        merrors = page.locator("mjx-merror").all_text_contents()
        assert not merrors, f"{page_name}: TeX errors {merrors[:5]}"
    report["maths"] = n_math

    # Images: every <img> loaded.
    images = page.evaluate("""async () => {
        const imgs = [...document.images];
        await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
        return imgs.map(i => [i.getAttribute('src'), i.naturalWidth]);
    }""")
    assert all(w > 0 for _, w in images), f"{page_name}: images not loaded: {[s for s, w in images if not w]}"
    report["images"] = len(images)

    # Exercise solutions: folded, and unfolded by a click on the title.
    solutions = page.locator(".solution.dropdown")
    for i in range(solutions.count()):
        sol = solutions.nth(i)
        body = sol.locator("section").first
        assert "toggle-hidden" in (sol.get_attribute("class") or ""), f"{page_name}: solution {i} not folded"
        assert not body.is_visible(), f"{page_name}: solution {i} visible before a click"
        sol.locator(".admonition-title > button.toggle-button").first.click()  # the title's chevron button
        body.wait_for(state="visible")
        assert "toggle-hidden" not in (sol.get_attribute("class") or "")
    report["solutions"] = solutions.count()

    # Colab launch link of a chapter: the repository and branch of _config.yml.
    if page_name.startswith("chapters/"):
        repo = urlsplit(CONFIG["repository"]["url"]).path.strip("/")
        branch = CONFIG["repository"].get("branch", "master")
        colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
        expected = f"{colab}/github/{repo}/blob/{branch}/{page_name.replace('.html', '.ipynb')}"
        links = page.eval_on_selector_all(f'a[href^="{colab}"]', "els => els.map(e => e.href)")
        assert links == [expected], f"{page_name}: Colab launch links {links}, expected [{expected!r}]"
        assert expected.startswith("https://colab.research.google.com/github/") and "/blob/main/" in expected, expected
        report["colab"] = links[0]

    # Widgets: every stored widget view is rendered by the (locally served) widget manager.
    n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if n_views:
        assert page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() == 1
        page.wait_for_function(f"() => document.querySelectorAll('.jupyter-widgets.widget-container, .widget-interact').length >= {n_views}")
        assert page.locator(".jupyter-widgets").first.is_visible()
    report["widgets"] = n_views

    if page_name in SCREENSHOT_PAGES:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stem = page_name.replace("/", "__").removesuffix(".html")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / f"{stem}.png"))
        if n_views:
            page.locator(".jupyter-widgets.widget-container, .widget-interact").first.screenshot(
                path=str(SCREENSHOTS / f"{stem}__widget.png"))
    errors = [e for e in v.errors if not any(re.match(k, e) for k in KNOWN_THEME_ERRORS)]
    assert not errors, f"{page_name}:\n" + "\n".join(errors)
    print(report, "blocked:", sorted(set(v.blocked)), "served locally:", len(v.served))


def test_search_box_finds_a_chapter(visit):
    """Sphinx's client-side search (searchindex.js) works offline: searching a term lists its chapter."""
    v = visit("search.html?q=RMSNorm")
    v.page.wait_for_selector("#search-results ul.search li a", timeout=TIMEOUT_MS)
    hits = v.page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
    assert any("chapters/03_rmsnorm.html" in h for h in hits), hits
    assert not [e for e in v.errors if not any(re.match(k, e) for k in KNOWN_THEME_ERRORS)], v.errors


def test_code_cells_have_copy_buttons(visit):
    v = visit("chapters/02_layernorm.html")
    cells = v.page.locator("div.cell_input div.highlight").count()
    buttons = v.page.locator("div.cell_input button.copybtn").count()
    assert cells > 10 and buttons == cells, (cells, buttons)
