"""GPU settings and energy: throughput, joules per 1k samples and peak memory per setting."""

from __future__ import annotations

import pandas as pd

from reports.asv_results import latest_per_machine
from reports.context import Context, asv_pivot, not_ok_reasons
from reports.fmt import human
from reports.page import Page, Plot, Section, Table, Verdict, add_sample_counts, figure, finite, left_out_line

ORDER = 40  # place in the nav (reports.pages.discover)

DEVICE_AXES = ("device", "setting", "device.name", "device.precision", "device.compile", "device.compile_mode",
               "device.batch_size", "precision", "compile")


# In the CSV/JSON only: the medians and counts behind the throughputs, and the watts behind the joules.
GPU_HIDDEN = ("train.step_ms.n", "train.step_ms.median", "infer.batch_ms.n", "infer.batch_ms.median",
              "energy.mean_watts", "energy.peak_watts")


def settings_table(ctx: Context) -> pd.DataFrame:
    recs = ctx.latest_records()
    if recs.empty:
        return pd.DataFrame()
    axes = [c for c in DEVICE_AXES if c in recs and recs[c].notna().any()]
    metrics = [c for c in ("throughput.train_samples_per_s", "train.step_ms.n", "train.step_ms.median",
                           "roofline.train", "throughput.infer_samples_per_s", "infer.batch_ms.n",
                           "infer.batch_ms.median", "roofline.infer", "energy.joules_per_1k_samples",
                           "energy.mean_watts", "energy.peak_watts", "memory.peak_device_bytes",
                           "memory.peak_host_rss_bytes", "energy.reason", "flags") if c in recs]
    if not metrics:
        return pd.DataFrame()
    cols = ["machine", "framework", *[c for c in ("data",) if c in recs], *axes, *metrics]
    df = recs[cols]
    models = recs["model.arch"].fillna("dlrm").astype(str) if "model.arch" in recs else None
    if "suite" in recs and (recs["suite"] == "gpu").any():
        df = df[recs["suite"] == "gpu"]
    if models is not None and models[df.index].nunique() > 1:  # shown where more than one model was measured
        df = df.assign(model=models[df.index])
        first = ["machine", "framework", "model"]
        df = df[[*first, *[c for c in df.columns if c not in first]]]
    return df.sort_values(["machine", "framework"]).reset_index(drop=True)


def _row_label(r: pd.Series, axes: list[str]) -> str:
    """framework [model] setting axes (machine), for the bar plots."""
    parts = ["framework", *(["model"] if "model" in r else []), *axes]
    return " ".join(str(r[c]) for c in parts if pd.notna(r[c])) + f" ({r['machine']})"


def _plot(df: pd.DataFrame) -> Plot | None:
    if "energy.joules_per_1k_samples" not in df or not df["energy.joules_per_1k_samples"].map(finite).any():
        return None
    d = df[df["energy.joules_per_1k_samples"].map(finite)]
    axes = [c for c in DEVICE_AXES if c in d]
    labels = [_row_label(r, axes) for _, r in d.iterrows()]
    fig, ax = figure(8, max(2.5, 0.35 * len(d) + 1))
    ax.barh(range(len(d)), d["energy.joules_per_1k_samples"], color="#dd8452")
    ax.set_yticks(range(len(d)), labels, fontsize=8)
    ax.set_xlabel("joules per 1k samples (lower is better)")
    fig.tight_layout()
    return Plot("gpu_energy", fig, "Joules per 1k samples per setting",
                "Joules per 1k samples per setting: one NVML-measured training window per record (n=1 window).")


def energy_verdict(ctx: Context) -> Verdict:
    """The lowest joules per 1k samples among the newest records, or why none was measured."""
    recs = ctx.latest_records()
    col = "energy.joules_per_1k_samples"
    if not recs.empty and col in recs and recs[col].map(finite).any():
        d = recs[recs[col].map(finite)].sort_values(col)
        r = d.iloc[0]
        setting = " ".join(str(r[c]) for c in DEVICE_AXES if c in d and pd.notna(r[c]))
        return Verdict("Energy per 1k samples (lowest)", human(r[col], "J"),
                       f"{r['framework']} {setting} on {r['machine']}; {len(d)} setting(s) measured",
                       "gpu.html", rank=50)
    reasons = recs["energy.reason"].dropna().astype(str) if not recs.empty and "energy.reason" in recs else []
    why = pd.Series(reasons).mode().iloc[0] if len(reasons) else "no record has an energy section"
    return Verdict("Energy per 1k samples", "not measured", why, "gpu.html", rank=50)


def _throughput_plot(df: pd.DataFrame) -> Plot | None:
    col = "throughput.train_samples_per_s"
    if col not in df or not df[col].map(finite).any():
        return None
    d = df[df[col].map(finite)].head(20)
    axes = [c for c in DEVICE_AXES if c in d]
    labels = [_row_label(r, axes) for _, r in d.iterrows()]
    fig, ax = figure(8, max(2.5, 0.35 * len(d) + 1))
    ax.barh(range(len(d)), d[col] / 1e3, color="#55a868")
    ax.set_yticks(range(len(d)), labels, fontsize=8)
    ax.set_xlabel("training throughput (k samples/s, higher is better)")
    fig.tight_layout()
    return Plot("gpu_throughput", fig, "Training throughput per setting",
                "Training throughput per setting: one timed window per record (first 20 settings).")


def build(ctx: Context) -> Page:
    page = Page("gpu", "GPU settings and energy",
                "Per device setting (precision, compilation, batch size): throughput, energy per 1k samples "
                "(NVML) and peak device memory. A figure that cannot be measured on a machine shows its reason.")
    df = settings_table(ctx)
    page.verdicts.append(energy_verdict(ctx))
    piv = add_sample_counts(asv_pivot(ctx.rows, "bench_gpu"), ctx.rows, "bench_gpu")
    gpu_rows = latest_per_machine(ctx.rows)
    gpu_rows = gpu_rows[gpu_rows["module"] == "bench_gpu"] if not gpu_rows.empty else gpu_rows
    if df.empty and piv.empty:
        if not gpu_rows.empty:
            counts = gpu_rows["status"].value_counts().to_dict()
            page.empty_reason = ("bench_gpu ran but produced no numbers: " + ", ".join(
                f"{v} {k}" for k, v in counts.items()) + " (skipped = the benchmark's setup raised "
                "NotImplementedError, e.g. no GPU on the machine).")
        else:
            page.empty_reason = "no GPU or energy results yet (no records with energy/memory sections, no bench_gpu)."
        return page
    if not df.empty:
        sec = Section("Per setting (run records)",
                      "Throughput: one timed window per record; train.step_ms.n / infer.batch_ms.n: per-step and "
                      "per-batch samples behind the medians (schema v2 records, else absent). roofline.*: achieved "
                      "rate as a fraction of its roofline bound; highlighted rows carry flags.",
                      tables=[Table("gpu_settings", df, highlight="flags" if "flags" in df else "",
                                    show=[c for c in df.columns if c not in GPU_HIDDEN])])
        p = _plot(df)
        if p:
            sec.plots.append(p)
        else:
            sec.text += " No energy figures recorded (every record gives its reason in the energy.reason column)."
            tp = _throughput_plot(df)
            if tp:
                sec.plots.append(tp)
        page.sections.append(sec)
    if not piv.empty:
        page.sections.append(Section("asv bench_gpu", "time_* n: asv samples behind each median (1 under asv "
                                     "--quick); track_* figures are one value each.",
                                     tables=[Table("gpu_asv", piv)]))
    elif not gpu_rows.empty:
        counts = gpu_rows["status"].value_counts().to_dict()
        page.sections.append(Section("asv bench_gpu", "No numbers: " + ", ".join(
            f"{v} {k}" for k, v in counts.items()) + " (skipped = NotImplementedError in setup, e.g. no GPU)."))
    if page.sections:
        page.sections[0].left_out = left_out_line(not_ok_reasons(ctx, "gpu"), "run")
    return page
