"""The Python half of benchmarks/gpu_check.sh: probe a framework's GPU, then summarise the run.

``python -m recsys_impls.gpucheck probe torch|tf`` prints ``ok: <GPU>`` (exit 0) or ``skip: <reason>``
(exit 3), using the implementations' own device checks, so the script can skip every GPU scenario of
a framework at once instead of paying start-up and data generation for each.

``python -m recsys_impls.gpucheck summary OUTDIR`` reads OUTDIR/status.tsv (one line per scenario,
written by the script) and the records beside it; prints a compact table; writes summary.md and a
dependency-free summary.html; and builds the full HTML report (``reports``) when pandas, matplotlib
and jinja2 are importable, else says which are missing. Stdlib only at import.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

STATUS_FILE = "status.tsv"
COLUMNS = ("setting", "status", "train samples/s", "infer samples/s", "p99 ms", "J/1k samples",
           "peak device MiB", "AUC")
REPORT_DEPS = ("pandas", "matplotlib", "jinja2")


def probe(framework: str) -> tuple[bool, str]:
    """(True, GPU description) if the framework can use a GPU here, else (False, reason)."""
    from recsys_impls.config import DeviceConfig
    from recsys_impls.errors import ScenarioUnsupported
    from recsys_impls.gpu_settings import framework_absent_reason

    missing = framework_absent_reason(framework)
    if missing:
        return False, missing
    try:
        if framework == "torch":
            import torch

            from recsys_impls.torch_impl.settings import resolve

            s = resolve(DeviceConfig(device="cuda"))
            name = torch.cuda.get_device_name(s.device)
            return True, f"{name} (PyTorch {torch.__version__}, CUDA {torch.version.cuda})"
        from recsys_impls.tf_impl.runtime import configure

        rt = configure(DeviceConfig(device="GPU:0"))
        return True, f"{rt.facts.get('gpu_name')} (TensorFlow {rt.facts.get('tensorflow')})"
    except ScenarioUnsupported as exc:
        return False, str(exc)


def read_status(outdir: Path) -> list[dict[str, str]]:
    """The script's per-scenario lines: name, status, seconds, reason (tab-separated)."""
    path = outdir / STATUS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = (line.split("\t") + ["", "", "", ""])[:4]
        if parts[0]:
            rows.append({"name": parts[0], "status": parts[1], "seconds": parts[2], "reason": parts[3]})
    return rows


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def row_of(name: str, status: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: the record's figures (None where it has none)."""
    r = record or {}
    peak = _get(r, "memory", "peak_device_bytes")
    if peak is None:
        peak = _get(r, "energy", "train", "peak_device_memory_bytes")
    return {
        "setting": name,
        "status": status,
        "train samples/s": _get(r, "throughput", "train_samples_per_s"),
        "infer samples/s": _get(r, "throughput", "infer_samples_per_s"),
        "p99 ms": _get(r, "latency_ms", "p99"),
        "J/1k samples": _get(r, "energy", "train", "joules_per_1k_samples"),
        "peak device MiB": None if peak is None else peak / 2**20,
        "AUC": _get(r, "quality", "auc"),
    }


def _fmt(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if col == "AUC":
            return f"{v:.4f}"
        if col in ("p99 ms", "J/1k samples"):
            return f"{v:.3f}"
        return f"{v:,.0f}"
    return str(v)


def table_rows(outdir: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(rows for every scenario, the status lines) from OUTDIR."""
    status = read_status(outdir)
    rows = []
    for s in status:
        rec_path = outdir / f"{s['name']}.json"
        record = None
        if s["status"] == "ok" and rec_path.is_file():
            try:
                record = json.loads(rec_path.read_text())
            except (OSError, json.JSONDecodeError):
                record = None
        rows.append(row_of(s["name"], s["status"], record))
    return rows, status


def render_text(rows: list[dict[str, Any]]) -> str:
    cells = [[_fmt(r[c], c) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(COLUMNS)]
    line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(x.ljust(w) for x, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(out)


def render_markdown(rows: list[dict[str, Any]], status: list[dict[str, str]]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(_fmt(r[c], c) for c in COLUMNS) + " |" for r in rows]
    notes = [f"- {s['name']}: {s['status']}: {s['reason']}" for s in status if s["status"] != "ok"]
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def render_html(rows: list[dict[str, Any]], status: list[dict[str, str]], title: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c], c))}</td>" for c in COLUMNS) + "</tr>"
                   for r in rows)
    notes = "".join(f"<li><b>{html.escape(s['name'])}</b>: {html.escape(s['status'])}: {html.escape(s['reason'])}</li>"
                    for s in status if s["status"] != "ok")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px;text-align:right}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}</table>"
            + (f"<h2>Not run</h2><ul>{notes}</ul>" if notes else "")
            + "<p>Records: the *.json files beside this page (one per scenario).</p></body></html>")


def stage_records(outdir: Path, status: list[dict[str, str]]) -> tuple[Path, str]:
    """Copy the ok records into <outdir>/records/<machine>/gpu-check/ (the layout reports reads)."""
    from recsys_impls.benchsupport import machine_name

    machine = machine_name()
    dest = outdir / "records" / machine / "gpu-check"
    dest.mkdir(parents=True, exist_ok=True)
    for s in status:
        src = outdir / f"{s['name']}.json"
        if s["status"] != "ok" or not src.is_file():
            continue
        record = json.loads(src.read_text())
        record["asv"] = {"suite": "gpu", "params": {"setting": s["name"]}, "machine": machine, "commit": "gpu-check"}
        (dest / src.name).write_text(json.dumps(record, indent=1, sort_keys=True))
    return dest.parent.parent, machine


def build_report(outdir: Path, status: list[dict[str, str]]) -> str:
    """Build the full report into OUTDIR/report, or one line saying why it was not built."""
    missing = [m for m in REPORT_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        return (f"full HTML report not built: missing {', '.join(missing)} (pip install -e .[report]); "
                f"summary.html has the table")
    records, _ = stage_records(outdir, status)
    profiles = outdir / "profiles"
    if not profiles.is_dir():
        profiles.mkdir()
    out = outdir / "report"
    if out.exists():
        shutil.rmtree(out)
    try:
        from reports.build import build

        site = build(results=str(outdir / "no-asv-results"), records=str(records), out=str(out),
                     profiles=str(profiles), records_only=True)
    except Exception as exc:  # noqa: BLE001 - the records and summary stand without the report
        return f"full HTML report not built: {type(exc).__name__}: {exc}"
    return f"full HTML report: {site / 'index.html'}"


def summary(outdir: Path) -> int:
    rows, status = table_rows(outdir)
    if not status:
        print(f"error: {outdir / STATUS_FILE}: no scenario lines; run benchmarks/gpu_check.sh first", file=sys.stderr)
        return 2
    print(render_text(rows))
    not_ok = [s for s in status if s["status"] != "ok"]
    if not_ok:
        print("\nnot run or not ok:")
        for s in not_ok:
            print(f"  {s['name']}: {s['status']}: {s['reason']}")
    (outdir / "summary.md").write_text(render_markdown(rows, status))
    (outdir / "summary.html").write_text(render_html(rows, status, "GPU check"))
    print(f"\nsummary: {outdir / 'summary.md'}, {outdir / 'summary.html'}")
    print(build_report(outdir, status))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recsys_impls.gpucheck", allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("probe", help="can this framework use a GPU here? exit 0 yes, 3 no (with the reason)")
    pr.add_argument("framework", choices=["torch", "tf"])
    sm = sub.add_parser("summary", help="table + summary.md/html + the HTML report from a gpu_check folder")
    sm.add_argument("outdir")
    args = p.parse_args(argv)
    if args.cmd == "probe":
        ok, text = probe(args.framework)
        print(f"{'ok' if ok else 'skip'}: {text}")
        return 0 if ok else 3
    return summary(Path(args.outdir))


if __name__ == "__main__":
    sys.exit(main())
