"""`python -m reports build`: asv results (+ records, profiles) -> a self-contained static site.

Writes index.html, one HTML page per topic, img/*.png (matplotlib Agg), data/*.csv and data/*.json
for every table, static/style.css, and copies profiles (SVG/JSON) so links work offline.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError
from reports.asv_results import load_store
from reports.context import Context
from reports.fmt import human, is_number, unit_of
from reports.page import Page, Table, short
from reports.records import load_records, machine_fingerprints

HERE = Path(__file__).resolve().parent
PROFILE_SUFFIXES = (".svg", ".json", ".txt", ".html", ".speedscope")


def _page_builders() -> list[Any]:
    from reports.pages import discover

    return [mod.build for mod in discover()]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dict, list)):
        return json.loads(json.dumps(v, default=str))
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


HIDDEN = ("record", "fingerprint", "samples", "params", "flag_list")


def write_table(frame: pd.DataFrame, data_dir: Path, name: str) -> dict[str, str]:
    """CSV and JSON twins of a table; returns their paths relative to the site root."""
    frame = frame.drop(columns=[c for c in HIDDEN if c in frame.columns])
    frame.to_csv(data_dir / f"{name}.csv", index=False)
    rows = [{str(k): _jsonable(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    (data_dir / f"{name}.json").write_text(json.dumps(rows, indent=1, default=str))
    return {"csv": f"data/{name}.csv", "json": f"data/{name}.json"}


def _flagged(v: Any) -> bool:
    return not (v is None or (isinstance(v, float) and math.isnan(v)) or v == "" or v is False)


WIDE_COLUMNS = 12  # a table with more shown columns may break words anywhere to stay inside 1280 px
CELL_CHARS = 90  # longer text is cut in the page (tooltip and CSV keep it whole)


def _breakable(text: str) -> str:
    """Escaped text that may wrap after . _ , / (long benchmark names and column names)."""
    return re.sub(r"([_,/]|\.(?!\d))", r"\1<wbr>", html.escape(text))


def table_html(table: Table) -> str:
    """The shown part of a table, escaped, each cell in human units with its raw number in data-v (the
    sort key); rows whose ``highlight`` column is non-empty get class "flag"."""
    frame = table.frame.drop(columns=[c for c in HIDDEN if c in table.frame.columns])
    cols = [c for c in table.show if c in frame.columns] or list(frame.columns)
    shown = frame.head(table.limit)
    head = "".join(f'<th title="{html.escape(str(c))}: click to sort">{_breakable(str(c))}</th>' for c in cols)
    body = []
    for _, rec in shown.iterrows():
        cells = []
        for c in cols:
            v = rec[c]
            if hasattr(v, "item") and not isinstance(v, str):
                v = v.item()  # numpy scalar -> Python number
            unit = table.units.get(str(c), unit_of(str(c)))
            if unit == "@unit":
                unit = str(rec.get("unit") or "")
            text = human(v, unit)
            if is_number(v):
                cells.append(f'<td class="num" data-v="{float(v)!r}">{html.escape(text)}</td>')
            elif len(text) > CELL_CHARS:  # the short view: the whole text is in the tooltip and the CSV
                cut = text[:CELL_CHARS - 1].rsplit(" ", 1)[0] + "\u2026"
                cells.append(f'<td title="{html.escape(text)}">{_breakable(cut)}</td>')
            else:
                cells.append(f"<td>{_breakable(text)}</td>")
        flag = table.highlight in frame.columns and _flagged(rec[table.highlight])
        body.append(f'<tr class="flag">{"".join(cells)}</tr>' if flag else f"<tr>{''.join(cells)}</tr>")
    cls = "data sortable wide" if len(cols) > WIDE_COLUMNS else "data sortable"
    return (f'<table class="{cls}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody>\n</table>")


def find_profiles(profiles_dir: Path, out: Path) -> list[dict[str, str]]:
    """Copy profile files (flame-graph SVGs, speedscope/JSON) into the site and list them."""
    if not profiles_dir.is_dir():
        return []
    dest = out / "profiles"
    found = []
    for p in sorted(profiles_dir.rglob("*")):
        if p.is_file() and p.suffix.lower() in PROFILE_SUFFIXES:
            rel = p.relative_to(profiles_dir)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
            found.append({"name": str(rel), "href": "profiles/" + rel.as_posix()})
    return found


def load_nightly(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The A/A history and the unstable list the nightly job keeps (empty when it has not run)."""
    from reports.nightly import HISTORY, UNSTABLE, read_history

    unstable: dict[str, Any] = {}
    if (folder / UNSTABLE).is_file():
        try:
            unstable = json.loads((folder / UNSTABLE).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{folder / UNSTABLE}: unreadable unstable list ({exc})") from None
    return read_history(folder / HISTORY), unstable


def check_base_url(url: str) -> str:
    """'' (relative links) or an http(s) URL / absolute path, ending in '/'."""
    if not url:
        return ""
    if not (url.startswith(("http://", "https://", "/")) and " " not in url and '"' not in url):
        raise UsageError(f"--base-url {url}: give the URL the folder will be served from "
                         "(http://..., https://... or /path/), or leave it out for relative links")
    return url if url.endswith("/") else url + "/"


def copy_asv_site(src: Path, out: Path, explicit: bool) -> str:
    """Copy `asv publish`'s site into OUT/asv so one folder publishes both; its link, or '' if absent."""
    if not (src / "index.html").is_file():
        if explicit:
            raise UsageError(f"--asv-html {src}: no index.html there; run `asv publish` first or leave it out")
        return ""
    dest = out / "asv"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return "asv/index.html"


def render_site(pages: list[Page], ctx: Context, out: Path, profiles: list[dict[str, str]],
                sources: dict[str, str], base_url: str = "", asv_site: str = "") -> None:
    """Every page, then the index with the pages' verdicts first. ``base_url`` prefixes every link
    ("" keeps them relative: the folder works from file:// and from any web root)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "sort.js"):
        shutil.copy2(HERE / "static" / name, out / "static" / name)
    env.globals["base"] = base_url
    nav = [{"href": f"{p.slug}.html", "title": p.title} for p in pages]
    for page in pages:
        rendered = []
        for sec in page.sections:
            tables = [{"caption": t.caption, "html": table_html(t) if t.limit else "",
                       "shown": min(len(t.frame), t.limit),
                       "files": write_table(t.frame, out / "data", t.name), "rows": len(t.frame)} for t in sec.tables]
            images = []
            for plot in sec.plots:
                plot.figure.savefig(out / "img" / f"{plot.name}.png")
                images.append({"src": f"img/{plot.name}.png", "alt": plot.alt, "caption": plot.caption or plot.alt})
            rendered.append({"title": sec.title, "text": sec.text, "tables": tables, "images": images,
                             "left_out": sec.left_out})
        html = env.get_template("page.html").render(page=page, sections=rendered, nav=nav, active=page.slug)
        (out / f"{page.slug}.html").write_text(html)
    rows = ctx.rows
    machines = []
    for m in sorted(rows["machine"].unique()) if not rows.empty else []:
        sub = rows[rows["machine"] == m]
        machines.append({"name": m, "commits": sub["commit"].nunique(),
                         "latest": short(sub.sort_values("date")["commit"].iloc[-1]),
                         "benchmarks": sub["benchmark"].nunique(),
                         "ok": int((sub["status"] == "ok").sum()), "failed": int((sub["status"] == "failed").sum()),
                         "skipped": int((sub["status"] == "skipped").sum())})
    verdicts = sorted((v for p in pages for v in p.verdicts), key=lambda v: v.rank)
    html = env.get_template("index.html").render(
        verdicts=verdicts, asv_site=asv_site,
        pages=[{"href": f"{p.slug}.html", "title": p.title, "summary": p.summary()} for p in pages],
        machines=machines, profiles=profiles, sources=sources, nav=nav, active="index", flags=all_flags(ctx),
        n_records=len(ctx.records), generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    (out / "index.html").write_text(html)


def all_flags(ctx: Context) -> list[dict[str, str]]:
    """Flags for the index: the consistency check's disagreements (newest commit per machine) and the
    flags the newest records carry (roofline above 1.05, disagreements written by annotate_records)."""
    from reports.consistency import check_latest

    out: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for p in check_latest(ctx.rows, ctx.records):
        if p.get("flag"):
            f = p["flag"]
            out[(p["machine"], Path(p["record_file"]).name, f["figure"], f["kind"])] = {
                "machine": p["machine"], "record": Path(p["record_file"]).name, "page": "framework.html", **f}
    recs = ctx.latest_records()
    if not recs.empty and "flag_list" in recs:
        for _, r in recs.iterrows():
            for f in r["flag_list"] if isinstance(r["flag_list"], list) else []:
                key = (r["machine"], Path(str(r["file"])).name, str(f.get("figure")), str(f.get("kind")))
                out.setdefault(key, {"machine": r["machine"], "record": key[1], "page": _page_of(r),
                                     "figure": key[2], "kind": key[3], "detail": str(f.get("detail", ""))})
    return sorted(out.values(), key=lambda f: (f["machine"], f["kind"], f["record"], f["figure"]))


def _page_of(row: pd.Series) -> str:
    suite = str(row.get("suite") or "")
    return {"compression": "compression.html", "parallel": "parallel.html", "gpu": "gpu.html"}.get(
        suite, "framework.html")


def build(results: str = ".asv/results", records: str | None = None, out: str = "reports/html",
          profiles: str | None = None, baseline_machine: str | None = None, factor: float = 1.1,
          records_only: bool = False, base_url: str = "", asv_html: str | None = None,
          nightly: str | None = None) -> Path:
    """Build the whole site; UsageError on bad input (missing results dir, unreadable JSON, bad baseline).

    ``records_only``: no asv results at all, only run records (a folder of ``<machine>/<run>/*.json``,
    as benchmarks/gpu_check.sh writes them); the pages that need asv say they have nothing.
    """
    base_url = check_base_url(base_url)
    if asv_html is not None and not (Path(asv_html) / "index.html").is_file():
        raise UsageError(f"--asv-html {asv_html}: no index.html there; run `asv publish` first or leave it out")
    if records_only:
        if not records:
            raise UsageError("--records-only needs --records DIR (a folder of <machine>/<run>/*.json records)")
        from reports.asv_results import COLUMNS, ResultStore

        store = ResultStore(path=Path(results), rows=pd.DataFrame(columns=COLUMNS))
    else:
        store = load_store(results)
    if store.rows.empty and not records_only:
        raise UsageError(f"--results {results}: no asv results files found; run the suite first "
                         "(python -m recsys_impls bench --quick)")
    rec_dir = Path(records) if records else store.path.parent / "records"
    if records and not rec_dir.exists():
        raise UsageError(f"--records {records}: no such directory")
    prof_dir = Path(profiles) if profiles else store.path.parent / "profiles"
    if profiles and not prof_dir.is_dir():
        raise UsageError(f"--profiles {profiles}: no such directory")
    recs = load_records(rec_dir)
    nightly_dir = Path(nightly) if nightly else store.path.parent / "nightly"
    if nightly and not nightly_dir.is_dir():
        raise UsageError(f"--nightly {nightly}: no such directory (the nightly job's A/A history folder)")
    nights, unstable = load_nightly(nightly_dir)
    ctx = Context(store=store, records=recs, fingerprints=machine_fingerprints(rec_dir, recs),
                  baseline_machine=baseline_machine, factor=factor, nightly=nights, unstable=unstable)
    pages = [builder(ctx) for builder in _page_builders()]
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("img", "data", "profiles"):
            if (out_dir / sub).is_dir():
                shutil.rmtree(out_dir / sub)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there: {exc.strerror}") from None
    found = find_profiles(prof_dir, out_dir)
    asv_site = copy_asv_site(Path(asv_html) if asv_html else store.path.parent / "html", out_dir,
                             explicit=asv_html is not None)
    render_site(pages, ctx, out_dir, found, {"results": str(store.path), "records": str(rec_dir),
                                             "profiles": str(prof_dir),
                                             "asv_html": str(asv_html or store.path.parent / "html")},
                base_url=base_url, asv_site=asv_site)
    return out_dir
