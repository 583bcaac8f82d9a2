"""PyTorch vs TensorFlow per scenario: ratio TF/PyTorch with asv's 99% confidence bounds, where
both sides have enough samples; the run records with their roofline fractions; consistency flags."""

from __future__ import annotations

import os
import re

import pandas as pd

from reports.asv_results import latest_per_machine
from reports.context import Context
from reports.fmt import human
from reports.page import (
    MIN_SAMPLES,
    RATIO_CI_NOTE,
    Page,
    Plot,
    Section,
    Table,
    Verdict,
    enough_samples,
    figure,
    finite,
    geomean,
    left_out_line,
    ratio_axis,
    ratio_interval,
    short,
    too_few_label,
)
from reports.regressions import kind_of

ORDER = 10  # place in the nav (reports.pages.discover)

FRAMEWORKS = ("torch", "tf")
EXACT = re.compile(r"bytes$")
RECORD_COLUMNS = (
    "machine", "framework", "data", "compression", "parallel", "schema_version", "quality.auc", "quality.logloss",
    "throughput.train_samples_per_s", "train.timed_steps", "train.step_ms.n", "train.step_ms.median",
    "train.step_ms.ci_low", "train.step_ms.ci_high", "roofline.train", "throughput.infer_samples_per_s",
    "infer.batch_ms.n", "infer.batch_ms.median", "infer.batch_ms.ci_low", "infer.batch_ms.ci_high",
    "roofline.infer", "latency_ms.p99", "latency_ms.n", "size.model_bytes", "memory.peak_host_rss_bytes",
    "threads.intra_op", "threads.inter_op", "flags")
RATIO_SHOWN = ["suite", "figure", "scenario", "machine", "torch", "torch_n", "tf", "tf_n", "ratio_tf_over_torch",
               "ci99_low", "ci99_high", "better"]
RECORD_SHOWN = ["machine", "framework", "data", "quality.auc", "throughput.train_samples_per_s", "train.step_ms.median",
                "train.step_ms.n", "roofline.train", "throughput.infer_samples_per_s", "roofline.infer",
                "latency_ms.p99", "size.model_bytes", "memory.peak_host_rss_bytes", "flags"]
ROOF_PHASES = ("train", "infer")


def suite_standing(table: pd.DataFrame) -> pd.DataFrame:
    """Per machine and suite: the geometric mean of TF/PyTorch over the figures that have a 99% interval
    (both sides n >= MIN_SAMPLES; higher-is-better figures inverted so < 1 always means TF is faster or
    smaller), with the geometric means of the interval bounds as a conservative interval."""
    out = []
    if table.empty:
        return pd.DataFrame(out)
    ok = table[table["ci99_low"].map(finite) & table["ci99_high"].map(finite)]
    for (machine, suite), g in table.groupby(["machine", "suite"]):
        h = ok[(ok["machine"] == machine) & (ok["suite"] == suite)]
        inv = [kind_of(f, f.split("_")[0]) == "higher" for f in h["figure"]]
        r = [1 / x if i else x for x, i in zip(h["ratio_tf_over_torch"], inv, strict=True)]
        lo = [1 / hi if i else lo for lo, hi, i in zip(h["ci99_low"], h["ci99_high"], inv, strict=True)]
        hi = [1 / lo if i else hi for lo, hi, i in zip(h["ci99_low"], h["ci99_high"], inv, strict=True)]
        gm, glo, ghi = geomean(r), geomean(lo), geomean(hi)
        if not h.empty:
            verdict = ("tie (interval spans 1)" if glo <= 1 <= ghi else
                       ("TensorFlow faster/smaller" if ghi < 1 else "PyTorch faster/smaller"))
        else:
            verdict = f"no ratio: no figure with n >= {MIN_SAMPLES} on both sides"
        out.append({"machine": machine, "suite": suite, "figures": len(h), "of_figures": len(g),
                    "geomean_tf_over_torch": gm if len(h) else None, "ci99_low": glo if len(h) else None,
                    "ci99_high": ghi if len(h) else None, "verdict": verdict})
    return pd.DataFrame(out)


def _standing_plot(st: pd.DataFrame) -> Plot | None:
    d = st[st["geomean_tf_over_torch"].map(finite)]
    if d.empty:
        return None
    fig, ax = figure(8, max(2.2, 0.45 * len(d) + 1))
    y = list(range(len(d)))
    g = list(d["geomean_tf_over_torch"])
    ax.barh(y, g, xerr=[[a - b for a, b in zip(g, d["ci99_low"], strict=True)],
                        [b - a for a, b in zip(g, d["ci99_high"], strict=True)]], color="#4c72b0", capsize=3)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, [f"{s} ({m}), {n} figures" for s, m, n in zip(d["suite"], d["machine"], d["figures"],
                                                                   strict=True)], fontsize=8)
    ratio_axis(ax)
    ax.set_xlabel("geometric mean TensorFlow / PyTorch (log; < 1: TensorFlow faster), 99% interval")
    fig.tight_layout()
    return Plot("framework_standing", fig, "TensorFlow over PyTorch per suite, geometric mean with 99% interval",
                f"Geometric mean of TF/PyTorch per suite over the figures with n >= {MIN_SAMPLES} on both sides; "
                "whiskers: geometric means of the per-figure interval bounds (conservative).")


def standing_verdicts(st: pd.DataFrame) -> list[Verdict]:
    """One headline per machine: each suite's geometric mean with its interval; suites without one named."""
    out = []
    for machine, g in st.groupby("machine"):
        has = g[g["geomean_tf_over_torch"].map(finite)]
        parts = [f"{str(r['suite']).removeprefix('bench_')} {human(r['geomean_tf_over_torch'], 'x')} "
                 f"({human(r['ci99_low'], 'x')}-{human(r['ci99_high'], 'x')})" for _, r in has.iterrows()]
        none = [str(s).removeprefix("bench_") for s in g.loc[~g.index.isin(has.index), "suite"]]
        detail = "; ".join(f"{str(r['suite']).removeprefix('bench_')}: {r['verdict']} over {r['figures']} figure(s)"
                           for _, r in has.iterrows())
        if none:
            detail += ("; " if detail else "") + f"no ratio for {', '.join(none)} (fewer than {MIN_SAMPLES} samples)"
        out.append(Verdict(f"TensorFlow / PyTorch time, geometric mean per suite ({machine})",
                           ", ".join(parts) if parts else "no ratio", detail, "framework.html", rank=20))
    return out


def roofline_verdict(ctx: Context) -> Verdict | None:
    """The lowest roofline fractions of the newest records: where the headroom is."""
    recs = ctx.latest_records()
    found = []
    for phase in ROOF_PHASES:
        col = f"roofline.{phase}.fraction"
        if recs.empty or col not in recs:
            continue
        for _, r in recs[recs[col].map(finite)].iterrows():
            found.append((float(r[col]), f"{r.get('framework')} {r.get('suite', '')} {phase} "
                          f"({r.get(f'roofline.{phase}.bound', '?')} bound, {r['machine']})"))
    if not found:
        return None
    found.sort()
    low = "; ".join(f"{label}: {human(frac, 'frac')}" for frac, label in found[:3])
    return Verdict("Most headroom (lowest roofline fractions)", human(found[0][0], "frac") + " of the bound",
                   low, "framework.html", rank=40)


def exact_figure(metric: str, type_: str) -> bool:
    """Counted, not measured (bytes of a serialized model): one value has no sampling noise."""
    return type_ == "track" and bool(EXACT.search(str(metric)))


def ratio_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (machine, benchmark, scenario): both frameworks' values with their sample counts,
    and the TF/PyTorch ratio with its 99% interval only where both sides have >= MIN_SAMPLES samples
    (or the figure is an exact count); otherwise "single sample" / "n=3, too few for a CI"."""
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
            ok_t, ok_f = t is not None and t["status"] == "ok", f is not None and f["status"] == "ok"
            row = {"machine": machine, "suite": ref["module"], "benchmark": bench,
                   "figure": bench.rsplit(".", 1)[-1], "scenario": scn, "unit": ref["unit"],
                   "commit": short(ref["commit"]),
                   "torch": t["value"] if ok_t else None, "torch_n": t["n"] if ok_t else None,
                   "tf": f["value"] if ok_f else None, "tf_n": f["n"] if ok_f else None,
                   "ratio_tf_over_torch": None, "ci99_low": None, "ci99_high": None, "better": ""}
            if finite(row["torch"]) and finite(row["tf"]) and row["torch"] != 0:
                _compare(row, t, f, ref)
            else:
                missing = [n for n, s in (("torch", t), ("tf", f)) if s is None or s["status"] != "ok"]
                row["better"] = "n/a: " + ", ".join(
                    f"{n} {(pair[n]['status'] if n in pair else 'absent')}" for n in missing) if missing else \
                    "n/a: PyTorch value is 0"
            out.append(row)
    return pd.DataFrame(out)


def _compare(row: dict, t: pd.Series, f: pd.Series, ref: pd.Series) -> None:
    """Fill ratio, interval and verdict, or say why there is none."""
    higher = kind_of(ref["metric"], ref["type"]) == "higher"
    exact = exact_figure(ref["metric"], ref["type"])
    if not exact and not enough_samples(row["torch_n"], row["tf_n"]):
        row["better"] = too_few_label({"torch": row["torch_n"], "tf": row["tf_n"]})
        return
    r_ = row["ratio_tf_over_torch"] = row["tf"] / row["torch"]
    winner = "tie" if r_ == 1 else ("tf" if (r_ < 1) != higher else "torch")
    if exact:
        row["better"] = f"{winner} (exact count, no sampling noise)"
        return
    row["ci99_low"], row["ci99_high"] = ratio_interval(f["ci_lo"], f["ci_hi"], t["ci_lo"], t["ci_hi"])
    if row["ci99_low"] is None:
        row["better"] = "no verdict: no finite 99% interval"
    elif row["ci99_low"] <= 1 <= row["ci99_high"]:
        row["better"] = "tie (CI spans 1)"
    else:
        row["better"] = winner


def _plot(table: pd.DataFrame) -> Plot | None:
    times = table[table["benchmark"].str.contains(r"\.time_")]
    t = times[times["ratio_tf_over_torch"].map(finite) & times["ci99_low"].map(finite)]
    left_out = len(times) - len(t)
    if t.empty:
        return None
    t = t.head(30)
    fig, ax = figure(8, max(2.5, 0.35 * len(t) + 1))
    labels = [f"{b.rsplit('.', 1)[-1]} [{s}] ({m}) n={int(tn)}/{int(fn)}" for b, s, m, tn, fn in
              zip(t["benchmark"], t["scenario"], t["machine"], t["torch_n"], t["tf_n"], strict=False)]
    y = list(range(len(t)))
    ratios = list(t["ratio_tf_over_torch"])
    lo = [r - c for r, c in zip(ratios, t["ci99_low"], strict=False)]
    hi = [c - r for r, c in zip(ratios, t["ci99_high"], strict=False)]
    ax.barh(y, ratios, xerr=[lo, hi], color="#4c72b0", capsize=3)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(y, labels, fontsize=8)
    ratio_axis(ax)
    ax.set_xlabel("TensorFlow / PyTorch median time (log; <1: TF faster), 99% interval")
    fig.tight_layout()
    caption = ("Median time ratio TensorFlow / PyTorch per scenario, n = asv samples per side (torch/tf). "
               "Whiskers: tf_low/torch_high .. tf_high/torch_low from asv's 99% intervals of each median. ")
    caption += (f"{left_out} time_* figure(s) with fewer than {MIN_SAMPLES} samples on a side are left out "
                "(see the table)." if left_out else f"Every time_* figure has >= {MIN_SAMPLES} samples per side.")
    return Plot("framework_time_ratio", fig, "Time ratio TensorFlow over PyTorch per scenario with 99% interval",
                caption)


def _records_table(ctx: Context) -> pd.DataFrame:
    recs = ctx.latest_records()
    if recs.empty:
        return recs
    cols = [c for c in RECORD_COLUMNS if c in recs]
    core = recs
    if "suite" in recs:
        core = recs[recs["suite"] == "core"] if (recs["suite"] == "core").any() else recs
    return core[cols].sort_values([c for c in ("machine", "data", "framework") if c in cols])


def consistency_table(pairs: list[dict]) -> pd.DataFrame:
    """One row per asv figure and record of the same work; "flag" holds the disagreement, if any."""
    rows = []
    for p in pairs:
        rows.append({"machine": p["machine"], "commit": short(p["commit"]), "figure": p["figure"],
                     "record_ms": p["record_ms"], "record_n": p["record_n"], "record_measure": p["record_how"],
                     "asv_ms": p["asv_ms"], "asv_n": p["asv_n"], "ratio_record_over_asv": p["ratio_record_over_asv"],
                     "agree": p["agree"], "record": os.path.basename(p["record_file"]),
                     "flag": p["flag"]["detail"] if p.get("flag") else ""})
    return pd.DataFrame(rows)


def build(ctx: Context) -> Page:
    from reports.consistency import FACTOR, check_latest

    page = Page("framework", "Framework comparison",
                "PyTorch and TensorFlow on the same scenarios, each machine's newest commit. Ratio = TensorFlow / "
                "PyTorch; for times, bytes, 1-AUC and logloss lower is better. Every figure states its sample count "
                f"n (asv: samples its median is taken over; track_* figures are one value each). A ratio, a verdict "
                f"or a 99% interval is shown only when both sides have n >= {MIN_SAMPLES} (or the figure is an exact "
                "byte count); otherwise the row says 'single sample' or 'n=3, too few for a CI'. " + RATIO_CI_NOTE)
    table = ratio_table(ctx.rows) if not ctx.rows.empty else pd.DataFrame()
    rec = _records_table(ctx)
    if table.empty and rec.empty:
        page.empty_reason = "no asv results with a 'framework' parameter and no run records yet."
        return page
    if table.empty:
        page.sections.append(Section("Ratios per scenario", "No asv results with a 'framework' parameter: "
                                     "only the run records below."))
    else:
        st = suite_standing(table)
        sec = Section("Standing per suite", f"A suite's figures count only where both sides have n >= {MIN_SAMPLES} "
                      "samples and a finite 99% interval; figures: how many, of_figures: all the suite's.",
                      tables=[Table("framework_standing", st)])
        p = _standing_plot(st)
        if p:
            sec.plots.append(p)
        page.sections.append(sec)
        page.verdicts.extend(standing_verdicts(st))
        page.sections.append(_ratio_section(table))
    rv = roofline_verdict(ctx)
    if rv:
        page.verdicts.append(rv)
    pairs = check_latest(ctx.rows, ctx.records)
    if pairs:
        flagged = sum(1 for p in pairs if p.get("flag"))
        page.sections.append(Section(
            "Consistency: asv timing vs the run record of the same work",
            f"asv's time_train_step / time_infer_batch (median seconds per call) against the record of the same "
            f"framework, model shape, batch size, optimizer, precision, device and compression (its median "
            f"per-step / per-batch time). More than {FACTOR:g}x apart either way is flagged: one of the two measures "
            f"something else. {flagged} of {len(pairs)} pair(s) flagged.",
            tables=[Table("framework_consistency", consistency_table(pairs), highlight="flag")]))
    if not rec.empty:
        page.sections.append(Section(
            "Run records (quality, throughput, latency, size, roofline)",
            "From the full run records beside asv's results. n columns: per-step (train.step_ms.n) and per-batch "
            "(infer.batch_ms.n) samples behind each median and its 99% interval (schema v2 records; v1 records have "
            "only the timed window: train.timed_steps steps, no interval). roofline.*: achieved rate as a fraction "
            "of the bound (compute or memory) the roofline model puts the work under; above 1.05 is flagged. "
            "Highlighted rows carry flags.",
            tables=[Table("framework_records", rec, highlight="flags" if "flags" in rec else "", show=RECORD_SHOWN)]))
    return page


def _ratio_section(table: pd.DataFrame) -> Section:
    measured = table["torch"].map(finite) & table["tf"].map(finite)
    shown = table[measured]
    few = shown["better"].astype(str).str.startswith(("single sample", "n=")).sum()
    text = (f"{few} row(s) have fewer than {MIN_SAMPLES} samples on a side (e.g. asv --quick times one call): no "
            "ratio or verdict is drawn from them." if few else "")
    with_ratio = shown[shown["ratio_tf_over_torch"].map(finite)]
    ordered = pd.concat([with_ratio, shown[~shown.index.isin(with_ratio.index)]])
    sec = Section("Ratios per scenario", text,
                  tables=[Table("framework_ratios", ordered, "both frameworks measured", show=RATIO_SHOWN,
                                units={"torch": "@unit", "tf": "@unit"})],
                  left_out=left_out_line([str(b).removeprefix("n/a: ") for b in table.loc[~measured, "better"]],
                                         "scenario"))
    if not table[~measured].empty:
        sec.tables.append(Table("framework_ratios_all", table,
                                "every scenario, skipped and failed included (download only)",
                                limit=0))
    plot = _plot(table)
    if plot:
        sec.plots.append(plot)
    elif table["benchmark"].str.contains(r"\.time_").any():
        sec.text += f" No ratio plot: no time_* figure has >= {MIN_SAMPLES} samples on both sides."
    return sec
