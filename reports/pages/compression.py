"""Compression: quality vs bytes and vs throughput (Pareto fronts) per dataset, and the AUC gates.

Gates follow MLPerf DLRM: a compressed model keeps >= 99% (strict: 99.9%) of the uncompressed AUC.
The gate is recomputed here from the AUCs so it is checked, not just copied from the record.

Models whose gate metric is not AUC (the retrieval models: recall@10 for two-tower, HR@10 for NeuMF) have
no AUC: each gets its own panel and table of the embedding bytes ratio against the change in its gate
metric, the metric named on the axis (``retrieval_points``: records' compression sections, else asv's
``track_quality_loss`` and ``track_inverse_embedding_ratio``).
"""

from __future__ import annotations

import pandas as pd

from reports.context import Context, asv_pivot, not_ok_reasons
from reports.fmt import human
from reports.page import Page, Plot, Section, Table, Verdict, figure, finite, left_out_line, pareto_front

ORDER = 20  # place in the nav (reports.pages.discover)

GATES = (0.99, 0.999)
DEFAULT_MODEL = "dlrm"  # records from before the model registry name no architecture: they are DLRMs
GROUP = ["machine", "framework", "data", "model"]  # one uncompressed baseline per group


def _models(r: pd.DataFrame, column: str) -> pd.Series:
    """The architecture of each row (``column``), DEFAULT_MODEL where a record or result names none."""
    if column in r:
        return r[column].fillna(DEFAULT_MODEL).astype(str)
    return pd.Series([DEFAULT_MODEL] * len(r), index=r.index)


def several_models(df: pd.DataFrame) -> bool:
    """Whether the model is worth a column and a label: more than one architecture was measured."""
    return "model" in df and df["model"].nunique() > 1


def _label(r: pd.Series, with_model: bool) -> str:
    return f"{r['model']} {r['framework']} ({r['machine']})" if with_model else f"{r['framework']} ({r['machine']})"


def points(ctx: Context) -> tuple[pd.DataFrame, str]:
    """(machine, framework, data, model, method, auc, bytes, infer_samples_per_s) from records, else asv."""
    recs = ctx.latest_records()
    if not recs.empty and "compression" in recs and "quality.auc" in recs:
        # the AUC page: a retrieval model's compressed record (recall/HR, no AUC) has no point on it
        r = recs[recs["compression"].notna() & recs["quality.auc"].notna()]
        if "suite" in r and (r["suite"] == "compression").any():
            r = r[r["suite"] == "compression"]
        if not r.empty:
            nbytes = r["compression.model_bytes"] if "compression.model_bytes" in r else r.get("size.model_bytes")
            if nbytes is None:
                nbytes = pd.Series([None] * len(r), index=r.index)
            nbytes = nbytes.fillna(r["size.model_bytes"]) if "size.model_bytes" in r else nbytes
            infer = r.get("throughput.infer_samples_per_s")
            df = pd.DataFrame({
                "machine": r["machine"], "framework": r["framework"], "data": r.get("data", "?"),
                "model": _models(r, "model.arch"), "method": r["compression"], "auc": r["quality.auc"], "bytes": nbytes,
                "infer_samples_per_s": infer, "record_gate": r.get("compression.gate"),
                "infer_n": r.get("infer.batch_ms.n"), "roofline_infer": r.get("roofline.infer"),
                "flags": r.get("flags"),
            })
            return pd.concat([df, _baselines(r, infer)], ignore_index=True), "run records"
    piv = asv_pivot(ctx.rows, "bench_compression")
    if piv.empty or "track_auc_gap" not in piv:
        return pd.DataFrame(), ""
    thr = None
    for c in piv.columns:
        if "infer" in c and "seconds_per_sample" in c:
            thr = 1 / piv[c]
    df = pd.DataFrame({
        "machine": piv["machine"], "framework": piv.get("framework"), "data": piv.get("data", "?"),
        "model": _models(piv, "model"), "method": piv.get("method", piv.get("compression")),
        "auc": 1 - piv["track_auc_gap"],
        "bytes": piv.get("track_model_bytes", piv.get("track_embedding_bytes")),
        "infer_samples_per_s": thr, "record_gate": None,
    })
    return df, "asv track_ benchmarks"


def gate_metric(model: str) -> str:
    """The model's gate metric (its first higher-is-better figure, as the record's compression section
    chooses it); "auc" for a name the registry does not know (records from before the registry)."""
    from recsys_impls.models import model_names, model_spec

    return model_spec(model).higher_is_better[0] if model in model_names() else "auc"


RETRIEVAL_SHOWN = ["machine", "framework", "data", "model", "method", "gate_metric", "quality_change",
                   "embedding_ratio"]


def retrieval_points(ctx: Context) -> tuple[pd.DataFrame, str]:
    """(machine, framework, data, model, method, gate_metric, quality_change, embedding_ratio) of the
    compressed runs of models gated on a metric other than AUC: quality_change is compressed minus fp32
    baseline in that metric, embedding_ratio the fp32 embedding bytes over the compressed ones (same
    container). From the latest run records where they have such points, else from asv."""
    recs = ctx.latest_records()
    if not recs.empty and "compression.gate_metric" in recs:
        r = recs[recs["compression.gate_metric"].notna() & (recs["compression.gate_metric"] != "auc")]
        if not r.empty:
            change = [row.get(f"compression.{row['compression.gate_metric']}_delta") for _, row in r.iterrows()]
            return pd.DataFrame({
                "machine": r["machine"], "framework": r["framework"], "data": r.get("data", "?"),
                "model": _models(r, "model.arch"), "method": r["compression"],
                "gate_metric": r["compression.gate_metric"], "quality_change": change,
                "embedding_ratio": r.get("compression.embedding_ratio"),
            }).reset_index(drop=True), "run records"
    piv = asv_pivot(ctx.rows, "bench_compression")
    if piv.empty or "track_quality_loss" not in piv or "model" not in piv:
        return pd.DataFrame(), ""
    piv = piv[piv["track_quality_loss"].map(finite)]
    metric = piv["model"].astype(str).map(gate_metric)
    piv, metric = piv[metric != "auc"], metric[metric != "auc"]
    if piv.empty:
        return pd.DataFrame(), ""
    inv = piv.get("track_inverse_embedding_ratio")
    return pd.DataFrame({
        "machine": piv["machine"], "framework": piv.get("framework"), "data": piv.get("data", "?"),
        "model": piv["model"].astype(str), "method": piv.get("method"), "gate_metric": metric,
        "quality_change": -piv["track_quality_loss"],
        "embedding_ratio": None if inv is None else inv.map(lambda v: 1 / v if finite(v) and v else None),
    }).reset_index(drop=True), "asv track_ benchmarks"


def _retrieval_plot(d: pd.DataFrame, model: str, metric: str) -> Plot | None:
    d = d[d["quality_change"].map(finite) & d["embedding_ratio"].map(finite)]
    if d.empty:
        return None
    fig, ax = figure(6.5, 4.0)
    for (fw, machine, data), g in d.groupby(["framework", "machine", "data"], dropna=False):
        ax.scatter(g["embedding_ratio"], g["quality_change"], label=f"{fw} on {data} ({machine})", s=30)
        for _, r in g.iterrows():
            ax.annotate(str(r["method"]), (r["embedding_ratio"], r["quality_change"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.axhline(0.0, color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("embedding bytes ratio (fp32 / compressed, log)")
    ax.set_ylabel(f"{metric} change (compressed - fp32)")
    ax.set_title(f"{model}: {metric} change vs embedding bytes ratio")
    ax.legend(fontsize=7)
    fig.tight_layout()
    safe = "".join(ch if ch.isalnum() else "_" for ch in model)
    return Plot(f"compression_retrieval_{safe}", fig, f"{model}: {metric} change against embedding bytes ratio",
                f"{model}: change in {metric} (its gate metric) against the embedding bytes ratio; each point one "
                "compressed model against its fp32 baseline (one training run each, n=1).")


def retrieval_sections(df: pd.DataFrame, source: str) -> list[Section]:
    """One section per model gated on a metric other than AUC: its points' table and plot."""
    out = []
    for (model, metric), d in df.groupby(["model", "gate_metric"], dropna=False):
        safe = "".join(ch if ch.isalnum() else "_" for ch in str(model))
        sec = Section(f"{model}: {metric} change vs embedding bytes ratio",
                      f"Source: {source}. {model} is gated on {metric}, not AUC: quality_change is the compressed "
                      f"model's {metric} minus its fp32 baseline's (same data, seed); embedding_ratio the fp32 "
                      "embedding bytes over the compressed ones in the same container.",
                      tables=[Table(f"compression_retrieval_{safe}", d.reset_index(drop=True),
                                    show=RETRIEVAL_SHOWN)])
        plot = _retrieval_plot(d, str(model), str(metric))
        if plot:
            sec.plots.append(plot)
        out.append(sec)
    return out


def _baselines(r: pd.DataFrame, infer: pd.Series | None) -> pd.DataFrame:
    """The fp32 baseline each compressed record was measured against (its own section holds the
    baseline's AUC, bytes in the same container, and relative speed), as "none" points."""
    if "compression.baseline_auc" not in r or "compression.baseline_model_bytes" not in r:
        return pd.DataFrame()
    speed = r.get("compression.infer_speed_vs_baseline")
    base_infer = infer / speed if infer is not None and speed is not None else None
    df = pd.DataFrame({
        "machine": r["machine"], "framework": r["framework"], "data": r.get("data", "?"),
        "model": _models(r, "model.arch"), "method": "none",
        "auc": r["compression.baseline_auc"], "bytes": r["compression.baseline_model_bytes"],
        "infer_samples_per_s": base_infer, "record_gate": None,
    })
    # One baseline per (machine, framework, data, model): every compressed run of a grid shares it.
    return df.dropna(subset=["auc"]).drop_duplicates(GROUP)


def gates(df: pd.DataFrame) -> pd.DataFrame:
    """Relative AUC vs the same framework's and model's uncompressed run, and which gates pass."""
    out = []
    if "model" not in df:
        df = df.assign(model=DEFAULT_MODEL)
    for (machine, fw, data, model), g in df.groupby(GROUP, dropna=False):
        base = g[g["method"] == "none"]
        base_auc = float(base["auc"].iloc[0]) if not base.empty and finite(base["auc"].iloc[0]) else None
        base_bytes = float(base["bytes"].iloc[0]) if not base.empty and finite(base["bytes"].iloc[0]) else None
        for _, r in g.iterrows():
            rel = r["auc"] / base_auc if base_auc and finite(r["auc"]) else None
            passed = [f"{int(x * 1000) / 10:g}%" for x in GATES if rel is not None and rel >= x]
            out.append({
                "machine": machine, "framework": fw, "data": data, "model": model, "method": r["method"],
                "auc": r["auc"],
                "bytes": r["bytes"], "compression_ratio": base_bytes / r["bytes"] if base_bytes and finite(r["bytes"])
                and r["bytes"] else None,
                "auc_change": r["auc"] - base_auc if base_auc and finite(r["auc"]) else None,
                "relative_auc": rel,
                "gate_99": None if rel is None else rel >= GATES[0],
                "gate_99_9": None if rel is None else rel >= GATES[1],
                "gates_passed": ", ".join(passed) if rel is not None else "n/a: no uncompressed baseline",
                "record_gate": r.get("record_gate"),
                "infer_samples_per_s": r.get("infer_samples_per_s"), "infer_n": r.get("infer_n"),
                "roofline_infer": r.get("roofline_infer"), "flags": r.get("flags"),
            })
    return pd.DataFrame(out)


def _pareto_plot(df: pd.DataFrame, data: str, xcol: str, xlabel: str, smaller_better: bool) -> Plot | None:
    d = df[(df["data"] == data) & df[xcol].map(finite) & df["auc"].map(finite)]
    if d.empty:
        return None
    fig, ax = figure(6.5, 4.2)
    with_model = several_models(d)
    for _, g in d.groupby(["framework", "machine", "model"]):
        ax.scatter(g[xcol], g["auc"], label=_label(g.iloc[0], with_model), s=30)
        for _, r in g.iterrows():
            ax.annotate(str(r["method"]), (r[xcol], r["auc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        pts = [((x if smaller_better else -x), y) for x, y in zip(g[xcol], g["auc"], strict=False)]
        front = sorted(pareto_front(pts), key=lambda i: g[xcol].iloc[i])
        ax.plot([g[xcol].iloc[i] for i in front], [g["auc"].iloc[i] for i in front], lw=1, alpha=0.7)
    base = d[d["method"] == "none"]["auc"]
    if not base.empty and not with_model:  # gate lines relative to one model's baseline only
        for frac, style in zip((0.99, 0.999), (":", "--"), strict=False):
            ax.axhline(base.max() * frac, color="grey", ls=style, lw=1, label=f"{frac * 100:g}% of fp32 AUC")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AUC")
    ax.set_title(f"{data}: AUC vs {xcol} (lines: Pareto front)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    safe = "".join(ch if ch.isalnum() else "_" for ch in str(data))
    caption = f"AUC versus {xcol} for {data}; each point one run record (one training run, n=1 for AUC)."
    if xcol == "infer_samples_per_s":
        ns = d["infer_n"].dropna() if "infer_n" in d else pd.Series(dtype=float)
        caption += (f" Throughput: one timed pass per record over n={int(ns.min())}..{int(ns.max())} batches."
                    if len(ns) else " Throughput: one timed pass per record (per-batch n not recorded: v1 records).")
    return Plot(f"compression_{safe}_{xcol}", fig, f"AUC versus {xcol} for {data}", caption)


GATE_SHOWN = ["machine", "framework", "data", "model", "method", "auc", "relative_auc", "gates_passed", "bytes",
              "compression_ratio", "infer_samples_per_s", "infer_n", "flags"]


def best_in_gates(g: pd.DataFrame) -> list[Verdict]:
    """Per gate: the compressed variant with the largest compression ratio that keeps the gate's share of
    the uncompressed AUC, with the bytes it saves and its inference speed against the baseline."""
    out = []
    cand = g[(g["method"] != "none") & g["compression_ratio"].map(finite)]
    for gate, col in zip(GATES, ("gate_99", "gate_99_9"), strict=True):
        label = f"{gate * 100:g}%"
        ok = cand[cand[col].fillna(False).astype(bool)]
        if ok.empty:
            out.append(Verdict(f"Best compression within the {label} AUC gate", "none passes",
                               f"{len(cand)} compressed variant(s) measured", "compression.html", rank=30))
            continue
        best = ok.sort_values(["compression_ratio", "relative_auc"], ascending=False).iloc[0]
        base = g[(g["method"] == "none") & (g["machine"] == best["machine"]) & (g["framework"] == best["framework"])
                 & (g["data"] == best["data"]) & (g["model"] == best["model"])]
        saved = base["bytes"].iloc[0] - best["bytes"] if not base.empty and finite(base["bytes"].iloc[0]) else None
        speed = ""
        if not base.empty and finite(best["infer_samples_per_s"]) and finite(base["infer_samples_per_s"].iloc[0]):
            speed = f", inference {human(best['infer_samples_per_s'] / base['infer_samples_per_s'].iloc[0], 'x')} " \
                    "the baseline's speed"
        out.append(Verdict(
            f"Best compression within the {label} AUC gate",
            f"{best['method']}: {human(best['compression_ratio'], 'x')} smaller",
            f"{best['model'] + ' ' if several_models(g) else ''}{best['framework']} on {best['data']} "
            f"({best['machine']}): saves {human(saved, 'bytes')}, keeps "
            f"{human(best['relative_auc'], 'frac')} of the AUC{speed}", "compression.html", rank=30, tone="good"))
    return out


def _gate_plot(g: pd.DataFrame) -> Plot | None:
    d = g[(g["method"] != "none") & g["relative_auc"].map(finite) & g["compression_ratio"].map(finite)]
    if d.empty:
        return None
    fig, ax = figure(7.5, 3.8)
    with_model = several_models(d)
    for _, s in d.groupby(["framework", "machine", "model"]):
        ax.scatter(s["compression_ratio"], s["relative_auc"], label=_label(s.iloc[0], with_model), s=30)
        for _, r in s.iterrows():
            ax.annotate(str(r["method"]), (r["compression_ratio"], r["relative_auc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    for gate, style in zip(GATES, (":", "--"), strict=True):
        ax.axhline(gate, color="grey", ls=style, lw=1, label=f"{gate * 100:g}% gate")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (uncompressed bytes / compressed bytes, log)")
    ax.set_ylabel("AUC / uncompressed AUC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Plot("compression_gates", fig, "Relative AUC against compression ratio with the 99% and 99.9% gates",
                "Each point one compressed run record against its framework's uncompressed model of the same "
                "architecture (n=1 training run).")


def build(ctx: Context) -> Page:
    page = Page("compression", "Compression",
                "Embedding compression variants: quality against stored bytes and against inference throughput, "
                "with the 99% and 99.9% AUC gates relative to the same framework's uncompressed model; models gated "
                "on another metric (retrieval: recall@10, HR@10) against that metric's change.")
    df, source = points(ctx)
    ret, ret_source = retrieval_points(ctx)
    if df.empty and ret.empty:
        page.empty_reason = "no compression results yet (no records with a compression section and no asv " \
                            "bench_compression results)."
        return page
    if df.empty:
        page.sections.extend(retrieval_sections(ret, ret_source))
        page.sections[0].left_out = left_out_line(not_ok_reasons(ctx, "compression"), "run")
        return page
    g = gates(df)
    page.sections.append(Section(
        "Gates", f"Source: {source}. infer_samples_per_s: one timed inference pass over the eval split per record; "
        "infer_n: the per-batch samples behind it (schema v2 records; n/a for v1 records and asv figures). "
        "roofline_infer: achieved rate as a fraction of its roofline bound; highlighted rows carry flags "
        "(a fraction above 1.05 is not physically possible).",
        tables=[Table("compression_gates", g, highlight="flags" if "flags" in g else "",
                      show=[c for c in GATE_SHOWN if c != "model" or several_models(g)])]))
    gp = _gate_plot(g)
    if gp:
        page.sections[-1].plots.append(gp)
    page.verdicts.extend(best_in_gates(g))
    for data in sorted(df["data"].dropna().unique(), key=str):
        sec = Section(f"Pareto plots: {data}")
        for xcol, label, small in (("bytes", "stored bytes (log)", True),
                                   ("infer_samples_per_s", "inference samples/s (log)", False)):
            p = _pareto_plot(df, data, xcol, label, small)
            if p:
                sec.plots.append(p)
            elif xcol == "infer_samples_per_s":
                sec.text = "No inference throughput recorded for these variants."
        page.sections.append(sec)
    if not ret.empty:
        page.sections.extend(retrieval_sections(ret, ret_source))
    if page.sections:
        page.sections[0].left_out = left_out_line(not_ok_reasons(ctx, "compression"), "run")
    return page
