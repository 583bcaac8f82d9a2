"""PyTorch vs TensorFlow per scenario: ratio TF/PyTorch with asv's 99% confidence bounds."""

from __future__ import annotations

import pandas as pd

from reports.asv_results import latest_per_machine
from reports.context import Context
from reports.page import Page, Plot, Section, Table, figure, finite, short
from reports.regressions import kind_of

FRAMEWORKS = ("torch", "tf")


def ratio_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (machine, benchmark, scenario) with both frameworks' values and tf/torch ratio."""
    latest = latest_per_machine(rows)
    latest = latest[latest["params"].map(lambda p: p.get("framework") in FRAMEWORKS)]
    out = []
    for (machine, bench), g in latest.groupby(["machine", "benchmark"]):
        by_scn: dict[str, dict[str, pd.Series]] = {}
        for _, r in g.iterrows():
            scn = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "framework") or "-"
            by_scn.setdefault(scn, {})[r["params"]["framework"]] = r
        for scn, pair in sorted(by_scn.items()):
            t, f = pair.get("torch"), pair.get("tf")
            ref = t if t is not None else f
            row = {"machine": machine, "benchmark": bench, "scenario": scn, "unit": ref["unit"],
                   "commit": short(ref["commit"]),
                   "torch": t["value"] if t is not None and t["status"] == "ok" else None,
                   "tf": f["value"] if f is not None and f["status"] == "ok" else None,
                   "ratio_tf_over_torch": None, "ci99_low": None, "ci99_high": None, "better": ""}
            if finite(row["torch"]) and finite(row["tf"]) and row["torch"] != 0:
                row["ratio_tf_over_torch"] = row["tf"] / row["torch"]
                if all(finite(x) and x > 0 for x in (t["ci_lo"], t["ci_hi"], f["ci_lo"], f["ci_hi"])):
                    row["ci99_low"] = f["ci_lo"] / t["ci_hi"]
                    row["ci99_high"] = f["ci_hi"] / t["ci_lo"]
                higher = kind_of(ref["metric"], ref["type"]) == "higher"
                r_ = row["ratio_tf_over_torch"]
                if row["ci99_low"] is not None and row["ci99_low"] <= 1 <= row["ci99_high"]:
                    row["better"] = "tie (CI spans 1)"
                elif r_ != 1:
                    row["better"] = "tf" if (r_ < 1) != higher else "torch"
            else:
                missing = [n for n, s in (("torch", t), ("tf", f)) if s is None or s["status"] != "ok"]
                row["better"] = "n/a: " + ", ".join(
                    f"{n} {(pair[n]['status'] if n in pair else 'absent')}" for n in missing)
            out.append(row)
    return pd.DataFrame(out)


def _plot(table: pd.DataFrame) -> Plot | None:
    t = table[table["benchmark"].str.contains(r"\.time_") & table["ratio_tf_over_torch"].map(finite)]
    if t.empty:
        return None
    t = t.head(30)
    fig, ax = figure(8, max(2.5, 0.35 * len(t) + 1))
    labels = [f"{b.rsplit('.', 1)[-1]} [{s}] ({m})" for b, s, m in zip(t["benchmark"], t["scenario"], t["machine"],
                                                                       strict=False)]
    y = list(range(len(t)))
    ratios = list(t["ratio_tf_over_torch"])
    lo = [r - c if finite(c) else 0 for r, c in zip(ratios, t["ci99_low"], strict=False)]
    hi = [c - r if finite(c) else 0 for r, c in zip(ratios, t["ci99_high"], strict=False)]
    ax.barh(y, ratios, xerr=[lo, hi], color="#4c72b0", capsize=3)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time ratio TensorFlow / PyTorch (log; <1: TensorFlow faster), 99% CI")
    fig.tight_layout()
    return Plot("framework_time_ratio", fig, "Time ratio TensorFlow over PyTorch per scenario with 99% CI")


def _records_table(ctx: Context) -> pd.DataFrame:
    recs = ctx.latest_records()
    if recs.empty:
        return recs
    cols = [c for c in ("machine", "framework", "data", "compression", "parallel", "quality.auc", "quality.logloss",
                        "throughput.train_samples_per_s", "throughput.infer_samples_per_s", "latency_ms.p99",
                        "size.model_bytes", "memory.peak_host_rss_bytes") if c in recs]
    core = recs
    if "suite" in recs:
        core = recs[recs["suite"] == "core"] if (recs["suite"] == "core").any() else recs
    return core[cols].sort_values([c for c in ("machine", "data", "framework") if c in cols])


def build(ctx: Context) -> Page:
    page = Page("framework", "Framework comparison",
                "PyTorch and TensorFlow on the same scenarios, each machine's newest commit. Ratio = TensorFlow / "
                "PyTorch; for times, bytes, 1-AUC and logloss lower is better. The 99% bounds combine asv's "
                "per-benchmark confidence intervals (present for timed benchmarks) and are conservative.")
    table = ratio_table(ctx.rows) if not ctx.rows.empty else pd.DataFrame()
    rec = _records_table(ctx)
    if table.empty and rec.empty:
        page.empty_reason = "no asv results with a 'framework' parameter and no run records yet."
        return page
    if table.empty:
        page.sections.append(Section("Ratios per scenario", "No asv results with a 'framework' parameter: "
                                     "only the run records below."))
    else:
        page.sections.append(_ratio_section(table))
    if not rec.empty:
        page.sections.append(Section("Run records (quality, throughput, latency, size)",
                                     "From the full run records beside asv's results.",
                                     tables=[Table("framework_records", rec)]))
    return page


def _ratio_section(table: pd.DataFrame) -> Section:
    sec = Section("Ratios per scenario", tables=[Table("framework_ratios", table, "raw values, seconds/bytes/...")])
    plot = _plot(table)
    if plot:
        sec.plots.append(plot)
    return sec
