"""Parallelism: throughput and scaling efficiency against world size, per-rank load and imbalance."""

from __future__ import annotations

import pandas as pd

from reports.context import Context, asv_pivot, not_ok_reasons
from reports.page import Page, Plot, Section, Table, add_sample_counts, figure, finite, left_out_line

ORDER = 30  # place in the nav (reports.pages.discover)

LOAD_KEYS = ("step_s", "compute_s", "load", "embedding_rows", "embedding_bytes", "lookups", "samples", "bytes")


def scaling(ctx: Context) -> tuple[pd.DataFrame, str]:
    recs = ctx.latest_records()
    if not recs.empty and "parallel.world_size" in recs:
        r = recs[recs["parallel.world_size"].notna()]
        if not r.empty:
            df = pd.DataFrame({
                "machine": r["machine"], "framework": r["framework"], "mode": r.get("parallel.mode"),
                "sharding": r.get("parallel.sharding"), "world_size": r["parallel.world_size"].astype(int),
                "train_samples_per_s": r.get("throughput.train_samples_per_s"),
                "scaling_efficiency": r.get("parallel.scaling_efficiency"),
                "train_step_n": r.get("train.step_ms.n"), "roofline_train": r.get("roofline.train"),
                "flags": r.get("flags"),
            })
            return df.sort_values(["machine", "framework", "world_size"]).reset_index(drop=True), "run records"
    piv = add_sample_counts(asv_pivot(ctx.rows, "bench_parallel"), ctx.rows, "bench_parallel")
    if piv.empty:
        return pd.DataFrame(), ""
    cols = [c for c in piv.columns if c.startswith(("track_", "time_"))]
    return piv[["machine", *[c for c in piv.columns if c not in cols and c != "machine"], *cols]], "asv benchmarks"


def per_rank(ctx: Context) -> pd.DataFrame:
    recs = ctx.latest_records()
    out = []
    if recs.empty or "record" not in recs:
        return pd.DataFrame()
    for _, r in recs.iterrows():
        par = r["record"].get("parallel") if isinstance(r["record"], dict) else None
        ranks = par.get("per_rank") if isinstance(par, dict) else None
        if not isinstance(ranks, list) or len(ranks) < 2:
            continue
        for i, rank in enumerate(ranks):
            if isinstance(rank, dict):
                row = {"machine": r["machine"], "framework": r["framework"], "mode": par.get("mode"),
                       "world_size": par.get("world_size"), "rank": rank.get("rank", i)}
                row.update({k: v for k, v in rank.items() if k != "rank" and finite(v)})
                out.append(row)
    return pd.DataFrame(out)


def imbalance(ranks: pd.DataFrame) -> pd.DataFrame:
    """max / mean per numeric load column: 1.0 is perfectly balanced."""
    out = []
    keys = [c for c in ranks.columns if c not in ("machine", "framework", "mode", "world_size", "rank")]
    for (machine, fw, mode), g in ranks.groupby(["machine", "framework", "mode"], dropna=False):
        row = {"machine": machine, "framework": fw, "mode": mode, "world_size": g["world_size"].iloc[0]}
        for k in keys:
            vals = g[k].dropna()
            if len(vals) and vals.mean() > 0:
                row[f"{k}_max_over_mean"] = vals.max() / vals.mean()
        out.append(row)
    return pd.DataFrame(out)


def _get(d: object, *path: str) -> object:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def balance_table(ctx: Context) -> pd.DataFrame:
    """One row per distributed record: the fault it ran under, how it was balanced, the imbalance
    (max/mean busy time per rank) before and after, the throughput against the static plan under the
    same fault, and the consistency figures (replicas identical; staleness of asynchronous updates)."""
    recs = ctx.latest_records()
    if recs.empty or "record" not in recs:
        return pd.DataFrame()
    rows = []
    for _, r in recs.iterrows():
        par = _get(r["record"], "parallel")
        if not isinstance(par, dict) or not par.get("world_size"):
            continue
        bal, eff = par.get("balance") or {}, par.get("balance_effect") or {}
        cons, stale = par.get("consistency") or {}, _get(par, "consistency", "staleness") or {}
        straggler, hot = _get(par, "faults", "straggler"), _get(par, "faults", "hot_table")
        rows.append({
            "machine": r["machine"], "framework": r["framework"], "mode": par.get("mode"),
            "world_size": par.get("world_size"),
            "straggler": f"rank {straggler.get('rank')} x{straggler.get('factor')}" if straggler else "—",
            "hot_table": f"table {hot.get('table')} {hot.get('share'):.0%}" if hot else "—",
            "balance": bal.get("mode", "static"),
            "imbalance_before": bal.get("imbalance_before", bal.get("imbalance_first_window",
                                                                  eff.get("reference_imbalance"))),
            "imbalance_after": bal.get("imbalance_after", bal.get("imbalance_last_window", bal.get("imbalance"))),
            "vs_static_throughput": eff.get("throughput_ratio"), "vs_static_auc_delta": eff.get("auc_delta"),
            "replan_s": bal.get("replan_s", bal.get("replan_s_total")), "bytes_moved": bal.get("bytes_moved"),
            "replicas_identical": par.get("replicas_identical"),
            "staleness_mean": stale.get("mean"), "staleness_p95": stale.get("p95"), "staleness_max": stale.get("max"),
            "stale_fraction": stale.get("stale_fraction"), "auc_delta_vs_sync": cons.get("auc_delta_vs_sync"),
        })
    return pd.DataFrame(rows)


def _staleness_plot(ctx: Context) -> Plot | None:
    recs = ctx.latest_records()
    if recs.empty or "record" not in recs:
        return None
    hists = []
    for _, r in recs.iterrows():
        h = _get(r["record"], "parallel", "consistency", "staleness", "histogram")
        if isinstance(h, dict) and h:
            hists.append((f"{r['framework']} {_get(r['record'], 'parallel', 'mode')} ({r['machine']})", h))
    if not hists:
        return None
    fig, ax = figure(8, 3.6)
    width = 0.8 / len(hists[:6])
    for j, (label, h) in enumerate(hists[:6]):
        total = sum(h.values())
        ax.bar([int(k) + j * width for k in h], [c / total for c in h.values()], width=width, label=label)
    ax.set_xlabel("staleness (other updates applied between an update's read and its write)")
    ax.set_ylabel("share of updates")
    ax.set_title("staleness of asynchronous updates")
    ax.legend(fontsize=7)
    fig.tight_layout()
    n = sum(sum(h.values()) for _, h in hists[:6])
    return Plot("parallel_staleness", fig, "Staleness distribution of asynchronous updates",
                f"Every update of each asynchronous run counted once ({n} updates in all).")


def _scaling_plot(df: pd.DataFrame) -> Plot | None:
    if "world_size" not in df or df["train_samples_per_s"].map(finite).sum() == 0:
        return None
    fig, (ax1, ax2) = figure(9, 3.8, ncols=2)
    groups = list(df.groupby(["machine", "framework", "sharding"], dropna=False))
    single = df["world_size"].nunique() < 2  # one world size: bars per run, not a line over a 1.9..2.1 axis
    for j, ((machine, fw, sharding), g) in enumerate(groups):
        g = g.sort_values("world_size")
        lab = f"{fw} {'' if pd.isna(sharding) else sharding} ({machine})"
        if single:
            ax1.bar([j], g["train_samples_per_s"].iloc[:1], label=lab)
            if finite(g["scaling_efficiency"].iloc[0]):
                ax2.bar([j], g["scaling_efficiency"].iloc[:1], label=lab)
            continue
        ax1.plot(g["world_size"], g["train_samples_per_s"], marker="o", label=lab)
        if g["scaling_efficiency"].map(finite).any():
            ax2.plot(g["world_size"], g["scaling_efficiency"], marker="o", label=lab)
    if single:
        for ax in (ax1, ax2):
            ax.set_xticks(range(len(groups)), [str(j + 1) for j in range(len(groups))], fontsize=7)
        ax1.set_xlabel(f"run (world size {int(df['world_size'].iloc[0])} only; see legend)")
        ax2.set_xlabel(f"run (world size {int(df['world_size'].iloc[0])} only)")
    else:
        ax1.set_xlabel("world size")
    ax1.set_ylabel("train samples/s")
    ax1.set_title("throughput")
    ax2.axhline(1.0, color="grey", lw=1)
    if not single:
        ax2.set_xlabel("world size")
    ax2.set_ylabel("scaling efficiency")
    ax2.set_title("efficiency = thr / (thr_1 x N)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    ns = df["train_step_n"].dropna() if "train_step_n" in df else pd.Series(dtype=float)
    caption = ("Training throughput and scaling efficiency against world size; each point one run record's timed "
               "window (" + (f"n={int(ns.min())}..{int(ns.max())} steps" if len(ns) else
                             "per-step n not recorded: v1 records") + "; no interval drawn).")
    return Plot("parallel_scaling", fig, "Training throughput and scaling efficiency against world size", caption)


def _rank_plot(ranks: pd.DataFrame) -> Plot | None:
    key = next((k for k in LOAD_KEYS if k in ranks and ranks[k].notna().any()), None)
    if key is None:
        return None
    groups = list(ranks.groupby(["machine", "framework", "mode"], dropna=False))[:8]
    fig, ax = figure(8, 3.8)
    width = 0.8 / max(1, len(groups))
    for j, ((machine, fw, mode), g) in enumerate(groups):
        ax.bar([r + j * width for r in g["rank"]], g[key], width=width, label=f"{fw} {mode} ({machine})")
    ax.set_xlabel("rank")
    ax.set_ylabel(key)
    ax.set_title(f"per-rank load: {key}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Plot("parallel_per_rank", fig, f"Per-rank {key}")


def build(ctx: Context) -> Page:
    page = Page("parallel", "Parallelism",
                "Data-parallel and sharded training: throughput and scaling efficiency against world size, the "
                "load each rank carries and the imbalance (max/mean; 1.0 = balanced).")
    df, source = scaling(ctx)
    if df.empty:
        page.empty_reason = "no parallel results yet (no records with a parallel section and no asv " \
                            "bench_parallel results)."
        return page
    about = ("train_samples_per_s: one timed training window per record; train_step_n: per-step samples behind "
             "it (schema v2 records, else n/a). roofline_train: achieved rate as a fraction of its roofline bound; "
             "highlighted rows carry flags." if source == "run records" else
             "track_* figures are one value per scenario run (n=1); time_* n: asv samples behind each median.")
    sec = Section("Scaling", f"Source: {source}. {about}",
                  tables=[Table("parallel_scaling", df, highlight="flags" if "flags" in df else "")])
    if source == "run records":
        p = _scaling_plot(df)
        if p:
            sec.plots.append(p)
    page.sections.append(sec)
    ranks = per_rank(ctx)
    if ranks.empty:
        page.sections.append(Section("Per-rank load", "No per-rank data in the records."))
    else:
        sec = Section("Per-rank load", tables=[Table("parallel_imbalance", imbalance(ranks)),
                                               Table("parallel_per_rank", ranks)])
        p = _rank_plot(ranks)
        if p:
            sec.plots.append(p)
        page.sections.append(sec)
    bal = balance_table(ctx)
    if not bal.empty:
        sec = Section("Faults, balance and consistency",
                      "Imbalance is max/mean of the ranks' busy time per step (1.0 = balanced), before and after "
                      "re-planning; vs_static_* compare with the static plan run under the same fault right after "
                      "(one pair: bench_balance interleaves pairs for an interval). Staleness: other updates "
                      "applied between an asynchronous update's read and its write.",
                      tables=[Table("parallel_balance", bal)])
        p = _staleness_plot(ctx)
        if p:
            sec.plots.append(p)
        page.sections.append(sec)
    if page.sections:
        page.sections[0].left_out = left_out_line(not_ok_reasons(ctx, "parallel"), "run")
    return page
