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


# Run in the page: everything the report promises a reader at 1280 px.
CHECKS_JS = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) out.push(`page scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth}`);
  document.querySelectorAll('table').forEach((t, i) => {
    const box = t.getBoundingClientRect();
    if (box.right > doc.clientWidth + 1) out.push(`table ${i} ends at ${Math.round(box.right)} px`);
  });
  document.querySelectorAll('td, th').forEach(c => {
    const text = c.textContent.trim();
    // Python's None / pandas' NaN leaking into a cell (the axis value 'none', e.g. no compression, is data)
    if (/^(None|NaT|null|undefined)$/.test(text) || /\\bnan\\b/i.test(text))
      out.push(`cell text '${text}'`);
  });
  Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).forEach(i => out.push(`image ${i.src}`));
  return out;
}"""


def _build_sites(tmp_path: Path) -> list[Path]:
    asv_site = tmp_path / "asv-html"  # stands in for `asv publish` output
    asv_site.mkdir()
    (asv_site / "index.html").write_text("<!DOCTYPE html><title>asv</title><p>asv publish site</p>")
    sites = []
    for name in ("store", "quick"):
        site = tmp_path / f"site-{name}"
        results = STORE.parent / name / "results"
        assert main(["build", "--results", str(results), "--out", str(site), "--asv-html", str(asv_site)]) == 0
        sites.append(site)
    return sites


def test_report_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright-python not installed (pip install "
                                   "playwright; no browser download needed)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    sites = _build_sites(tmp_path)
    shots = Path(os.environ.get("REPORT_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    visited = 0
    try:
        with sync_api.sync_playwright() as pw:
            # playwright gives every launch a fresh temporary profile (its own --user-data-dir).
            browser = pw.chromium.launch(executable_path=exe, args=FLAGS[1:], headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            checked_links: set[str] = set()
            for site in sites:
                base = f"{root}{site.name}/"
                names = ["index.html", *sorted(p.name for p in site.glob("*.html") if p.name != "index.html")]
                assert len(names) >= 7
                for name in names:
                    page.goto(base + name, wait_until="load")
                    visited += 1
                    problems += [f"{site.name}/{name}: {p}" for p in page.evaluate(CHECKS_JS)]
                    hrefs = page.evaluate(
                        "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
                    for href in hrefs:
                        url = urljoin(base + name, href).split("#")[0]
                        if not url.startswith(base):
                            problems.append(f"{site.name}/{name}: link outside the site: {href}")
                        elif url not in checked_links:
                            checked_links.add(url)
                            status = page.request.get(url).status
                            if status != 200:
                                problems.append(f"{site.name}/{name}: link {href} -> HTTP {status}")
                    page.screenshot(path=str(shots / f"{site.name}-{name[:-5]}.png"), full_page=True)
                # Sorting works: clicking a numeric header orders the column, clicking again reverses it.
                page.goto(base + "framework.html", wait_until="load")
                where = page.evaluate("""() => {
                    const tables = Array.from(document.querySelectorAll('table.sortable'));
                    for (let t = 0; t < tables.length; t++) {
                        const rows = tables[t].tBodies[0].rows;
                        if (rows.length < 2) continue;
                        const c = Array.from(rows[0].cells).findIndex(td => td.hasAttribute('data-v'));
                        if (c >= 0) return [t, c];
                    }
                    return null;
                }""")
                assert where, "no sortable table with a numeric column on framework.html"
                t, col = where
                for direction in (1, -1):
                    page.click(f"table.sortable >> nth={t} >> th >> nth={col}")
                    vals = page.evaluate(f"""() => Array.from(document.querySelectorAll('table.sortable')[{t}]
                        .tBodies[0].rows).map(r => r.cells[{col}].getAttribute('data-v')).filter(v => v !== null)
                        .map(parseFloat)""")
                    assert len(vals) >= 2 and vals == sorted(vals, reverse=direction < 0), vals
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots in {shots}")
    assert not problems, "\n".join(problems)
    assert visited >= 14
    assert (shots / "site-store-index.png").stat().st_size > 0
