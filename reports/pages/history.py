"""History: headline metrics across commits per machine, and the regressions between neighbours."""

from __future__ import annotations

import re

import pandas as pd

from reports.asv_results import commits_in_order
from reports.context import Context
from reports.page import Page, Plot, Section, Table, figure, finite, short
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
    t.columns = [short(c) for c in t.columns]
    return t.reset_index()


def _plots(rows: pd.DataFrame, machine: str) -> list[Plot]:
    sub = rows[(rows["machine"] == machine) & rows["benchmark"].str.contains(HEADLINE) & (rows["status"] == "ok")]
    order = commits_in_order(rows, machine)
    pos = {c: i for i, c in enumerate(order)}
    plots = []
    for bench, g in sorted(sub.groupby("benchmark")):
        fig, ax = figure(7, 3.2)
        for pkey, s in list(g.groupby("param_key"))[:8]:
            s = s.assign(x=s["commit"].map(pos)).sort_values("x")
            ax.plot(s["x"], s["value"], marker="o", label=pkey or "-")
        ax.set_xticks(range(len(order)), [short(c) for c in order], rotation=30, fontsize=7)
        unit = g["unit"].dropna().iloc[0] if g["unit"].notna().any() else ""
        ax.set_ylabel(unit or "value")
        ax.set_title(bench, fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        safe = re.sub(r"[^A-Za-z0-9]+", "_", f"{machine}_{bench}")
        plots.append(Plot(f"history_{safe}", fig, f"{bench} across commits on {machine}"))
    return plots


def regressions_between_commits(rows: pd.DataFrame, machine: str, th: Thresholds) -> pd.DataFrame:
    order = commits_in_order(rows, machine)
    out = []
    for prev, cur in zip(order, order[1:], strict=False):
        mk = rows["machine"] == machine
        b = Side(prev, prev, machine, rows[mk & (rows["commit"] == prev)])
        h = Side(cur, cur, machine, rows[mk & (rows["commit"] == cur)])
        cmp = compare(b, h, th)
        reg = cmp[cmp["verdict"] == "regressed"]
        for _, r in reg.iterrows():
            out.append({"machine": machine, "base": short(prev), "head": short(cur), "benchmark": r["benchmark"],
                        "params": r["param_key"], "base_value": r["base"], "head_value": r["head"],
                        "ratio": r["ratio"] if finite(r["ratio"]) else None, "why": r["why"]})
    return pd.DataFrame(out)


def build(ctx: Context) -> Page:
    page = Page("history", "History",
                "Headline metrics (train/inference time, 1-AUC, logloss, seconds per sample, memory, energy, "
                f"bytes) across commits, oldest first, and what `python -m reports regressions` flags between "
                f"consecutive commits (factor x{ctx.factor}, asv's statistics where samples exist).")
    if ctx.rows.empty:
        page.empty_reason = "no asv results."
        return page
    th = Thresholds(factor=ctx.factor).validate()
    for machine in sorted(ctx.rows["machine"].unique()):
        commits = commits_in_order(ctx.rows, machine)
        reg = regressions_between_commits(ctx.rows, machine, th)
        sec = Section(f"{machine}: {len(commits)} commit(s)")
        if len(commits) < 2:
            sec.text = "One commit only: nothing to compare yet."
        elif reg.empty:
            sec.text = f"No regressions between consecutive commits ({len(commits) - 1} comparison(s))."
        else:
            sec.text = f"{len(reg)} regression(s) found between consecutive commits."
            sec.tables.append(Table(f"history_regressions_{_safe(machine)}", reg, "regressions"))
        hist = history_table(ctx.rows, machine)
        if not hist.empty:
            sec.tables.append(Table(f"history_{_safe(machine)}", hist, "headline values per commit"))
            if len(commits) >= 2:
                sec.plots.extend(_plots(ctx.rows, machine))
        page.sections.append(sec)
    return page


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text)
