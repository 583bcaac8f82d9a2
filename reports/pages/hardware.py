"""Hardware comparison: the same benchmarks across machines, normalised to a baseline machine.

Each machine contributes its newest commit. Value ratio = machine / baseline (for times: < 1 is
faster than the baseline). The geometric mean over benchmarks both machines ran is the summary.
"""

from __future__ import annotations

import pandas as pd

from recsys_impls.errors import UsageError
from reports.asv_results import latest_per_machine
from reports.context import Context
from reports.page import Page, Plot, Section, Table, figure, finite, geomean, short
from reports.regressions import kind_of

FINGERPRINT_KEYS = ("cpu", "num_cpu", "ram", "os", "arch", "gpu", "gpu_name", "driver", "cuda", "torch",
                    "tensorflow", "python", "numpy")


def fingerprints(ctx: Context, machines: list[str]) -> pd.DataFrame:
    """Rows = fingerprint fields, columns = machines (asv machine.json + record fingerprint)."""
    data: dict[str, dict[str, str]] = {}
    for m in machines:
        info = {k: v for k, v in ctx.store.machines.get(m, {}).items() if k not in ("version", "machine")}
        fp = ctx.fingerprints.get(m, {})
        for k, v in _flat(fp).items():
            info.setdefault(k, v)
        latest = ctx.rows[ctx.rows["machine"] == m]
        if not latest.empty:
            info["commit"] = short(latest.sort_values("date")["commit"].iloc[-1])
        data[m] = {k: "" if v is None else str(v) for k, v in info.items()}
    keys = sorted({k for d in data.values() for k in d}, key=lambda k: (k not in FINGERPRINT_KEYS, k))
    return pd.DataFrame({m: [data[m].get(k, "") for k in keys] for m in machines}, index=keys).rename_axis("field")


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def comparison(ctx: Context, baseline: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(raw values, normalised ratios, geomean summary) with machines as columns."""
    latest = latest_per_machine(ctx.rows)
    latest = latest[latest["status"] == "ok"]
    machines = sorted(latest["machine"].unique(), key=lambda m: (m != baseline, m))
    raw = latest.assign(unit=latest["unit"].fillna("")).groupby(
        ["benchmark", "param_key", "unit", "machine"])["value"].first().unstack("machine")
    raw = raw.reindex(columns=machines)
    norm = raw.div(raw[baseline], axis=0) if baseline in raw else raw * float("nan")
    names = {b: b.rsplit(".", 1)[-1] for b in raw.index.get_level_values(0)}
    kinds = {b: kind_of(n, n.split("_")[0]) for b, n in names.items()}
    summary = []
    for m in machines:
        rows = {"machine": m}
        for label, pick in (("time_* benchmarks", lambda b: ".time_" in b),
                            ("all lower-is-better", lambda b: kinds[b] == "lower")):
            sel = [i for i in norm.index if pick(i[0])]
            vals = [norm.loc[i, m] for i in sel if finite(norm.loc[i, m])]
            rows[f"geomean ratio vs {baseline}: {label}"] = geomean(vals)
            rows[f"n ({label})"] = len(vals)
        summary.append(rows)
    return raw.reset_index(), norm.reset_index(), pd.DataFrame(summary)


def _plot(norm: pd.DataFrame, baseline: str) -> Plot | None:
    t = norm[norm["benchmark"].str.contains(r"\.time_")]
    machines = [c for c in t.columns if c not in ("benchmark", "param_key", "unit") and c != baseline]
    if t.empty or not machines:
        return None
    t = t.head(24)
    fig, ax = figure(8, max(2.5, 0.3 * len(t) * max(1, len(machines)) + 1))
    height = 0.8 / len(machines)
    for j, m in enumerate(machines):
        ax.barh([i + j * height for i in range(len(t))], t[m], height=height, label=m)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(range(len(t)), [f"{b.rsplit('.', 1)[-1]} [{p}]" for b, p in zip(t["benchmark"], t["param_key"],
                                                                                  strict=False)], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"time relative to {baseline} (log; <1 = faster)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Plot("hardware_time_ratios", fig, f"Benchmark times relative to {baseline}")


def build(ctx: Context) -> Page:
    page = Page("hardware", "Hardware comparison",
                "Every machine in the results store as a column (its newest commit), with its fingerprint, "
                "normalised to the baseline machine; the geometric mean summarises each machine.")
    if ctx.rows.empty:
        page.empty_reason = "no asv results."
        return page
    machines = sorted(ctx.rows["machine"].unique())
    baseline = ctx.baseline_machine or machines[0]
    if baseline not in machines:
        raise UsageError(f"--baseline-machine {baseline}: no results for it; available: {', '.join(machines)}")
    page.intro += f" Baseline: {baseline}."
    fp = fingerprints(ctx, machines)
    page.sections.append(Section("Machines", tables=[Table("hardware_fingerprints", fp.reset_index())]))
    if len(machines) < 2:
        page.sections.append(Section("Comparison", f"Only one machine ({machines[0]}) has results: run the suite "
                                     "on another machine with --machine NAME and copy its results folder here."))
    raw, norm, summary = comparison(ctx, baseline)
    sec = Section("Summary", tables=[Table("hardware_geomean", summary)])
    page.sections.append(sec)
    sec2 = Section(f"Normalised to {baseline}", tables=[Table("hardware_normalised", norm),
                                                         Table("hardware_values", raw)])
    p = _plot(norm, baseline)
    if p:
        sec2.plots.append(p)
    page.sections.append(sec2)
    return page
