"""Serving: export parity per format, LoadGen figures per runtime and scenario, and latency against
offered load (the Server QPS search) per runtime, with and without the dynamic batcher.

Reads the serving records (``kind: serving``) that ``bench_serving`` and ``python -m recsys_impls serve``
write.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports.context import Context
from reports.page import Page, Plot, Section, Table, figure, finite

ORDER = 45  # place in the nav (reports.pages.discover)


def serving_records(ctx: Context) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(machine, asv params or {}, record) of every serving record of each machine's newest commit."""
    recs = ctx.latest_records()
    if recs.empty or "record" not in recs:
        return []
    out = []
    for _, row in recs.iterrows():
        rec = row["record"]
        if isinstance(rec, dict) and rec.get("kind") == "serving" and isinstance(rec.get("serving"), dict):
            params = (rec.get("asv") or {}).get("params") or {}
            out.append((row["machine"], params, rec))
    return out


def parity_table(items: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    rows, seen = [], set()
    for machine, _params, rec in items:
        exp = rec["serving"].get("export") or {}
        p = exp.get("parity") or {}
        key = (machine, rec.get("framework"), exp.get("format"), exp.get("params_checksum"))
        if not exp or key in seen:
            continue
        seen.add(key)
        rows.append({"machine": machine, "framework": rec.get("framework"), "format": exp.get("format"),
                     "exporter": exp.get("exporter"), "max_abs_diff": p.get("max_abs_diff"),
                     "mean_abs_diff": p.get("mean_abs_diff"), "samples": p.get("samples"),
                     "tolerance": p.get("tolerance"), "ok": p.get("ok"), "stored_bytes": exp.get("stored_bytes")})
    return pd.DataFrame(rows)


def scenario_table(items: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    rows = []
    for machine, _params, rec in items:
        s = rec["serving"]
        runtime = (s.get("runtime") or {}).get("runtime")
        for name, r in (s.get("scenarios") or {}).items():
            lat = r.get("latency_ms") or {}
            rows.append({"machine": machine, "framework": rec.get("framework"), "runtime": runtime, "scenario": name,
                         "validity": r.get("validity"), "samples_per_s": r.get("samples_per_s"),
                         "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"), "p99_ms": lat.get("p99"),
                         "queries": (r.get("batcher") or {}).get("samples"),
                         "mean_batch": (r.get("batcher") or {}).get("mean_batch")})
    return pd.DataFrame(rows)


def search_table(items: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    rows = []
    for machine, params, rec in items:
        q = rec["serving"].get("server_search")
        if not isinstance(q, dict):
            continue
        for a in q.get("attempts") or []:
            rows.append({"machine": machine, "framework": rec.get("framework"),
                         "runtime": (rec["serving"].get("runtime") or {}).get("runtime"),
                         "batching": "no" if q.get("max_batch") == 1 else f"max {q.get('max_batch')}, "
                                                                            f"wait {q.get('max_wait_ms')} ms",
                         "target_qps": a.get("target_qps"), "p99_ms": a.get("p99_ms"), "valid": a.get("valid"),
                         "mean_batch": a.get("mean_batch"), "bound_ms": q.get("latency_bound_ms"),
                         "max_valid_qps": q.get("max_valid_qps"), "scenario": params.get("scenario", "Server")})
    return pd.DataFrame(rows)


def _curve_plot(df: pd.DataFrame) -> Plot | None:
    d = df[df["p99_ms"].map(finite) & df["target_qps"].map(finite)] if not df.empty else df
    if d.empty:
        return None
    fig, ax = figure(8, 4.2)
    for (machine, fw, runtime, batching), g in d.groupby(["machine", "framework", "runtime", "batching"]):
        g = g.sort_values("target_qps")
        ax.plot(g["target_qps"], g["p99_ms"], marker="o", label=f"{runtime} ({fw}, batching {batching}; {machine})")
    bound = d["bound_ms"].dropna()
    if len(bound):
        ax.axhline(float(bound.iloc[0]), color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (Server target QPS, Poisson)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title("latency against load per runtime")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return Plot("serving_latency_load", fig, "p99 latency against offered QPS per runtime",
                "Each point is one LoadGen Server run of the QPS search (one run per point, no interval); the "
                "dashed line is the p99 bound.")


def build(ctx: Context) -> Page:
    page = Page("serving", "Serving",
                "Exported models under MLPerf LoadGen: parity of each export with the native model, SingleStream "
                "p90 latency, Offline throughput, and the highest Server QPS whose p99 meets the bound.")
    items = serving_records(ctx)
    if not items:
        page.empty_reason = "no serving records yet (run the bench_serving suite or `python -m recsys_impls serve`)."
        return page
    parity = parity_table(items)
    page.sections.append(Section(
        "Export parity", "Max abs difference of probabilities, export vs the native model, on held-out samples "
        "(fp32 formats are gated at 1e-5; int8 is recorded, not gated).",
        tables=[Table("serving_parity", parity)] if not parity.empty else []))
    scen = scenario_table(items)
    if not scen.empty:
        page.sections.append(Section("LoadGen scenarios", "One LoadGen run per row; validity is LoadGen's verdict.",
                                     tables=[Table("serving_scenarios", scen)]))
    search = search_table(items)
    if not search.empty:
        sec = Section("Server: latency against load", "The QPS search's runs (doubling, then bisecting).",
                      tables=[Table("serving_server_search", search)])
        plot = _curve_plot(search)
        if plot:
            sec.plots.append(plot)
        page.sections.append(sec)
    return page
