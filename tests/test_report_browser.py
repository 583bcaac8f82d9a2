"""The built report in a real headless browser: no console errors, images render, links resolve.

Uses Debian's chromium through playwright-python (no browser download: executable_path points at
/usr/bin/chromium). Skips with the reason when either is missing. Screenshots of every page go to
$REPORT_SCREENSHOT_DIR if set, else the test's tmp dir; the path is printed.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import pytest

from reports.__main__ import main

pytestmark = pytest.mark.browser

STORE = Path(__file__).parent / "fixtures" / "asv" / "store"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright-python not installed (pip install "
                                   "playwright; no browser download needed)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    site = tmp_path / "site"
    assert main(["build", "--results", str(STORE / "results"), "--out", str(site)]) == 0
    shots = Path(os.environ.get("REPORT_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            # playwright gives every launch a fresh temporary profile (its own --user-data-dir).
            browser = pw.chromium.launch(executable_path=exe, args=FLAGS[1:], headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            pages = ["index.html", *sorted(p.name for p in site.glob("*.html") if p.name != "index.html")]
            assert len(pages) == 7
            checked_links: set[str] = set()
            for name in pages:
                page.goto(base + name, wait_until="load")
                bad_imgs = page.evaluate(
                    "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
                problems += [f"{name}: image not rendered: {s}" for s in bad_imgs]
                hrefs = page.evaluate(
                    "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
                for href in hrefs:
                    url = urljoin(base + name, href).split("#")[0]
                    if not url.startswith(base):
                        problems.append(f"{name}: external link {href}")
                    elif url not in checked_links:
                        checked_links.add(url)
                        status = page.request.get(url).status
                        if status != 200:
                            problems.append(f"{name}: link {href} -> HTTP {status}")
                page.screenshot(path=str(shots / f"{name[:-5]}.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots in {shots}")
    assert not problems, "\n".join(problems)
    assert (shots / "index.png").stat().st_size > 0
