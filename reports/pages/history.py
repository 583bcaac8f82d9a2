"""History: headline metrics across commits per machine, and the regressions between neighbours."""

from __future__ import annotations

import re

import pandas as pd

from reports.asv_results import commits_in_order
from reports.context import Context
from reports.page import (
    MIN_SAMPLES,
    Page,
    Plot,
    Section,
    Table,
    enough_samples,
    figure,
    finite,
    short,
    too_few_label,
)
from reports.regressions import Side, Thresholds, compare

HEADLINE = re.compile(r"\.(?:time_train|time_infer|track_auc_gap$|track_logloss$|track_.*seconds_per_sample|"
                      r"track_seconds_per_sample|peakmem_|track_joules|track_model_bytes$)")


def history_table(rows: pd.DataFrame, machine: str) -> pd.DataFrame:
    sub = rows[(rows["machine"] == machine) & rows["benchmark"].str.contains(HEADLINE)]
    if sub.empty:
        return pd.DataFrame()
    order = commits_in_order(rows, machine)
    sub = sub.assign(series=sub["benchmark"].str.rsplit(".", n=1).str[-1] + " [" + sub["param_key"] + "]")
    t = sub.pivot_table(index="series", columns="commit", values="value", aggfunc="first")
    t = t.reindex(columns=[c for c in order if c in t.columns])
    counts = sub.pivot_table(index="series", columns="commit", values="n", aggfunc="first").reindex(
        index=t.index, columns=t.columns)
    t.columns = [short(c) for c in t.columns]
    # Samples behind each commit's value, oldest first ("1" = a single sample, e.g. asv --quick).
    t["n per commit"] = ["/".join(str(int(v)) if finite(v) else "-" for v in r)
                         for r in counts.itertuples(index=False)]
    return t.reset_index()


def _plots(rows: pd.DataFrame, machine: str) -> list[Plot]:
    sub = rows[(rows["machine"] == machine) & rows["benchmark"].str.contains(HEADLINE) & (rows["status"] == "ok")]
    order = commits_in_order(rows, machine)
    pos = {c: i for i, c in enumerate(order)}
    plots = []
    for bench, g in sorted(sub.groupby("benchmark")):
        fig, ax = figure(7, 3.2)
        timed = ".time_" in bench
        marked = 0
        for pkey, s in list(g.groupby("param_key"))[:8]:
            s = s.assign(x=s["commit"].map(pos)).sort_values("x")
            ax.plot(s["x"], s["value"], marker="o", label=pkey or "-")
            few = s[~s["n"].map(enough_samples)] if timed else s.iloc[0:0]
            if not few.empty:
                ax.scatter(few["x"], few["value"], marker="x", s=60, color="red", zorder=3,
                           label=f"fewer than {MIN_SAMPLES} samples" if not marked else None)
                marked += len(few)
        ax.set_xticks(range(len(order)), [short(c) for c in order], rotation=30, fontsize=7)
        unit = g["unit"].dropna().iloc[0] if g["unit"].notna().any() else ""
        ax.set_ylabel(unit or "value")
        ns = g["n"].dropna()
        ax.set_title(f"{bench} (n={int(ns.min())}..{int(ns.max())} per point)" if len(ns) else bench, fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9]+", "_", f"{machine}_{bench}")
        caption = f"{bench} across commits on {machine}: " + (
            f"asv's median per commit; red crosses mark {marked} point(s) with fewer than {MIN_SAMPLES} samples "
            "(a single call under asv --quick): not comparable between commits." if marked else
            "asv's median per commit, each from >= 5 samples." if timed else "one value per run and commit (n=1).")
        plots.append(Plot(f"history_{safe}", fig, f"{bench} across commits on {machine}", caption))
    return plots


def regressions_between_commits(rows: pd.DataFrame, machine: str, th: Thresholds
                                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(regressions, set aside): a time_* change with fewer than MIN_SAMPLES samples on a side is not
    judged (a single call under asv --quick says nothing about a commit); it goes to the second table."""
    order = commits_in_order(rows, machine)
    out, aside = [], []
    mk = rows["machine"] == machine
    for prev, cur in zip(order, order[1:], strict=False):
        base_rows, head_rows = rows[mk & (rows["commit"] == prev)], rows[mk & (rows["commit"] == cur)]
        cmp = compare(Side(prev, prev, machine, base_rows), Side(cur, cur, machine, head_rows), th)
        reg = cmp[cmp["verdict"] == "regressed"]
        n_of = {side: dict(zip(zip(r["benchmark"], r["param_key"], strict=True), r["n"], strict=True))
                for side, r in (("base", base_rows), ("head", head_rows))}
        for _, r in reg.iterrows():
            key = (r["benchmark"], r["param_key"])
            bn, hn = n_of["base"].get(key), n_of["head"].get(key)
            row = {"machine": machine, "base": short(prev), "head": short(cur), "benchmark": r["benchmark"],
                   "params": r["param_key"], "base_value": r["base"], "base_n": bn, "head_value": r["head"],
                   "head_n": hn}
            if ".time_" in str(r["benchmark"]) and not enough_samples(bn, hn):
                aside.append({**row, "why": too_few_label({"base": bn, "head": hn}).replace("no ratio", "not judged")})
            else:
                out.append({**row, "ratio": r["ratio"] if finite(r["ratio"]) else None, "why": r["why"]})
    return pd.DataFrame(out), pd.DataFrame(aside)


def build(ctx: Context) -> Page:
    page = Page("history", "History",
                "Headline metrics (train/inference time, 1-AUC, logloss, seconds per sample, memory, energy, "
                f"bytes) across commits, oldest first, and what `python -m reports regressions` flags between "
                f"consecutive commits (factor x{ctx.factor}, asv's statistics where samples exist). A time_* "
                f"change with fewer than {MIN_SAMPLES} samples on a side is set aside, not judged; base_n/head_n "
                "give the counts.")
    if ctx.rows.empty:
        page.empty_reason = "no asv results."
        return page
    th = Thresholds(factor=ctx.factor).validate()
    for machine in sorted(ctx.rows["machine"].unique()):
        commits = commits_in_order(ctx.rows, machine)
        reg, aside = regressions_between_commits(ctx.rows, machine, th)
        sec = Section(f"{machine}: {len(commits)} commit(s)")
        if len(commits) < 2:
            sec.text = "One commit only: nothing to compare yet."
        elif reg.empty:
            sec.text = f"No regressions between consecutive commits ({len(commits) - 1} comparison(s))."
        else:
            sec.text = f"{len(reg)} regression(s) found between consecutive commits."
            sec.tables.append(Table(f"history_regressions_{_safe(machine)}", reg, "regressions"))
        if not aside.empty:
            sec.text += (f" {len(aside)} time_* change(s) beyond the factor set aside: fewer than {MIN_SAMPLES} "
                         "samples on a side.")
            sec.tables.append(Table(f"history_unjudged_{_safe(machine)}", aside, "set aside: too few samples"))
        hist = history_table(ctx.rows, machine)
        if not hist.empty:
            sec.tables.append(Table(f"history_{_safe(machine)}", hist, "headline values per commit"))
            if len(commits) >= 2:
                sec.plots.extend(_plots(ctx.rows, machine))
        page.sections.append(sec)
    return page


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text)
