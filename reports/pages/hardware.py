"""Hardware comparison: the same benchmarks across machines, normalised to a baseline machine.

Each machine contributes its newest commit. Value ratio = machine / baseline (for times: < 1 is
faster than the baseline), only where both figures have >= 5 samples or are exact byte counts. The
geometric mean over the benchmarks with a ratio is the summary; its n column counts them.
"""

from __future__ import annotations

import pandas as pd

from recsys_impls.errors import UsageError
from reports.asv_results import latest_per_machine
from reports.context import Context
from reports.page import (
    MIN_SAMPLES,
    RATIO_CI_NOTE,
    Page,
    Plot,
    Section,
    Table,
    enough_samples,
    figure,
    finite,
    geomean,
    n_label,
    ratio_axis,
    ratio_interval,
    short,
)
from reports.pages.framework import exact_figure
from reports.regressions import kind_of

ORDER = 50  # place in the nav (reports.pages.discover)

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
    """(raw values, normalised ratios, geomean summary) with machines as columns.

    A ratio is kept only where both machines' figures have >= MIN_SAMPLES samples (or the figure is an
    exact byte count); the others are NaN and their "note" says why. "n <machine>" columns give the counts.
    """
    latest = latest_per_machine(ctx.rows)
    latest = latest[latest["status"] == "ok"]
    machines = sorted(latest["machine"].unique(), key=lambda m: (m != baseline, m))
    keyed = latest.assign(unit=latest["unit"].fillna("")).groupby(["benchmark", "param_key", "unit", "machine"])
    raw = keyed["value"].first().unstack("machine").reindex(columns=machines)
    counts = keyed["n"].first().unstack("machine").reindex(columns=machines)
    ci_lo = keyed["ci_lo"].first().unstack("machine").reindex(columns=machines)
    ci_hi = keyed["ci_hi"].first().unstack("machine").reindex(columns=machines)
    types = latest.groupby("benchmark")["type"].first().to_dict()
    norm = raw.div(raw[baseline], axis=0) if baseline in raw else raw * float("nan")
    notes = []
    for idx in norm.index:
        bench = idx[0]
        exact = exact_figure(bench.rsplit(".", 1)[-1], types.get(bench, ""))
        few = []
        for m in machines:
            if m == baseline or exact or enough_samples(counts.loc[idx, m], counts.loc[idx, baseline]
                                                        if baseline in counts else None):
                continue
            if finite(norm.loc[idx, m]):
                few.append(f"{m} {n_label(counts.loc[idx, m])}")
            norm.loc[idx, m] = float("nan")
        base_n = counts.loc[idx, baseline] if baseline in counts else None
        if few and baseline in norm and not any(finite(norm.loc[idx, m]) for m in machines if m != baseline):
            norm.loc[idx, baseline] = float("nan")  # baseline / baseline = 1 compares nothing
        notes.append("exact count" if exact else (
            f"no ratio: fewer than {MIN_SAMPLES} samples ({baseline} {n_label(base_n)}; {', '.join(few)})"
            if few else ""))
    norm = norm.assign(note=notes)
    for m in machines:
        raw[f"n {m}"] = counts[m]
        norm[f"n {m}"] = counts[m]
        if m != baseline and baseline in raw:
            bounds = [ratio_interval(ci_lo.loc[i, m], ci_hi.loc[i, m], ci_lo.loc[i, baseline], ci_hi.loc[i, baseline])
                      if finite(norm.loc[i, m]) else (None, None) for i in norm.index]
            norm[f"{m} ci99_low"] = [b[0] for b in bounds]
            norm[f"{m} ci99_high"] = [b[1] for b in bounds]
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
    times = norm[norm["benchmark"].str.contains(r"\.time_")]
    machines = [c for c in times.columns if c not in ("benchmark", "param_key", "unit", "note") and c != baseline
                and not c.startswith("n ") and " ci99_" not in c]
    if times.empty or not machines:
        return None
    t = times[times[machines].apply(lambda r: any(finite(v) for v in r), axis=1)]
    left_out = len(times) - len(t)
    if t.empty:
        return None
    t = t.head(24)
    fig, ax = figure(8, max(2.5, 0.3 * len(t) * max(1, len(machines)) + 1))
    height = 0.8 / len(machines)
    for j, m in enumerate(machines):
        vals = list(t[m])
        lo = [v - c if finite(v) and finite(c) else 0 for v, c in zip(vals, t.get(f"{m} ci99_low", vals),
                                                                      strict=False)]
        hi = [c - v if finite(v) and finite(c) else 0 for v, c in zip(vals, t.get(f"{m} ci99_high", vals),
                                                                      strict=False)]
        ax.barh([i + j * height for i in range(len(t))], vals, height=height, xerr=[lo, hi], capsize=2,
                label=m)
    ax.axvline(1.0, color="k", lw=1)
    labels = [f"{b.rsplit('.', 1)[-1]} [{p}] n={_n(r, baseline)}/" + "/".join(_n(r, m) for m in machines)
              for (_, r), b, p in zip(t.iterrows(), t["benchmark"], t["param_key"], strict=False)]
    ax.set_yticks(range(len(t)), labels, fontsize=7)
    ratio_axis(ax)
    ax.set_xlabel(f"median time / {baseline} (log; <1 = faster), 99% interval")
    ax.legend(fontsize=7)
    fig.tight_layout()
    caption = (f"Median time relative to {baseline} per benchmark, n = asv samples ({baseline}/other machines). "
               f"{RATIO_CI_NOTE} ")
    caption += (f"{left_out} time_* benchmark(s) without a ratio (fewer than {MIN_SAMPLES} samples) left out."
                if left_out else f"Every time_* figure drawn has >= {MIN_SAMPLES} samples.")
    return Plot("hardware_time_ratios", fig, f"Benchmark times relative to {baseline}", caption)


def _one_machine_plot(ctx: Context, machine: str) -> Plot | None:
    """With one machine there is nothing to normalise to: its time_* medians, so the page still shows what
    the next machine will be compared on."""
    latest = latest_per_machine(ctx.rows)
    t = latest[(latest["machine"] == machine) & (latest["status"] == "ok") & (latest["type"] == "time")]
    if t.empty:  # only track_ figures (an empty mask would select no columns, not no rows)
        return None
    t = t[t["n"].map(enough_samples)].sort_values("value").head(24)
    if t.empty:
        return None
    fig, ax = figure(8, max(2.5, 0.3 * len(t) + 1))
    ms = [v * 1e3 for v in t["value"]]
    lo = [max(0.0, m - c * 1e3) if finite(c) else 0 for m, c in zip(ms, t["ci_lo"], strict=True)]
    hi = [max(0.0, c * 1e3 - m) if finite(c) else 0 for m, c in zip(ms, t["ci_hi"], strict=True)]
    ax.barh(range(len(t)), ms, xerr=[lo, hi], capsize=2, color="#8172b2")
    ax.set_yticks(range(len(t)), [f"{b.rsplit('.', 1)[-1]} [{k}] n={int(n)}" for b, k, n in
                                  zip(t["benchmark"], t["param_key"], t["n"], strict=True)], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"median time on {machine} (ms, log), 99% interval")
    fig.tight_layout()
    return Plot("hardware_one_machine", fig, f"time_* medians on {machine}",
                f"Only {machine} has results: its time_* medians (n >= {MIN_SAMPLES}), the figures another machine "
                "will be normalised against.")


def _n(row: pd.Series, machine: str) -> str:
    v = row.get(f"n {machine}")
    return str(int(v)) if finite(v) else "-"


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
    raw, norm, summary = comparison(ctx, baseline)
    sec = Section("Summary", tables=[Table("hardware_geomean", summary)])
    p = _plot(norm, baseline) if len(machines) > 1 else _one_machine_plot(ctx, machines[0])
    if p:
        sec.plots.append(p)
    page.sections.append(sec)
    if len(machines) < 2:
        sec.text = (f"Only one machine ({machines[0]}) has results: run the suite on another machine with "
                    "--machine NAME and copy its results folder here.")
    ratio_cols = {m: "x" for m in machines} | {f"{m} ci99_low": "x" for m in machines} | \
        {f"{m} ci99_high": "x" for m in machines}
    page.sections.append(Section(f"Normalised to {baseline}", tables=[
        Table("hardware_normalised", norm, units=ratio_cols), Table("hardware_values", raw,
                                                                    units={m: "@unit" for m in machines})]))
    page.sections.append(Section("Machines", tables=[Table("hardware_fingerprints", fp.reset_index())]))
    return page
