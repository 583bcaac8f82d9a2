"""History: headline metrics across commits per machine, and the regressions between neighbours."""

from __future__ import annotations

import re

import pandas as pd

from reports.asv_results import commits_in_order
from reports.changes import MAX_PVALUE, MIN_POINTS, change_points, recent_regressions
from reports.context import Context
from reports.fmt import human
from reports.page import (
    MIN_SAMPLES,
    Page,
    Plot,
    Section,
    Table,
    Verdict,
    enough_samples,
    figure,
    finite,
    short,
    too_few_label,
)
from reports.regressions import Side, Thresholds, compare

ORDER = 90  # place in the nav (reports.pages.discover)

SHOWN_COMMITS = 6
GATE_LAST = 10  # as `reports changes --last`'s default
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
    units = sub.groupby("series")["unit"].first()
    t.insert(0, "unit", [units.get(i) or "" for i in t.index])
    return t.reset_index()


def _plots(rows: pd.DataFrame, machine: str, cps: pd.DataFrame | None = None) -> list[Plot]:
    """One plot per headline benchmark; a dashed line just before each change point's commit (red: a
    regression, green: an improvement)."""
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
        n_cp = 0
        if cps is not None and not cps.empty:
            for _, c in cps[cps["benchmark"] == bench].iterrows():
                bad = c["direction"] == "regression"
                ax.axvline(c["index"] - 0.5, color="#c0392b" if bad else "#27ae60", ls="--", lw=1.2,
                           label=f"change point: {c['scenario']} {c['magnitude'] * 100:+.0f}%")
                n_cp += 1
        step = max(1, len(order) // 12)
        ax.set_xticks(range(0, len(order), step), [short(c) for c in order][::step], rotation=30, fontsize=7)
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
        if n_cp:
            caption += f" Dashed: {n_cp} change point(s) found by E-Divisive (red regression, green improvement)."
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
                   "params": r["param_key"], "unit": r["unit"], "base_value": r["base"], "base_n": bn,
                   "head_value": r["head"], "head_n": hn}
            if ".time_" in str(r["benchmark"]) and not enough_samples(bn, hn):
                aside.append({**row, "why": too_few_label({"base": bn, "head": hn}).replace("no ratio", "not judged")})
            else:
                out.append({**row, "ratio": r["ratio"] if finite(r["ratio"]) else None, "why": r["why"]})
    return pd.DataFrame(out), pd.DataFrame(aside)


def newest_changes(rows: pd.DataFrame, machine: str, th: Thresholds) -> tuple[str, str, pd.DataFrame]:
    """(base, head, judged rows) for the machine's newest commit against the one before: regressed and
    improved figures, time_* ones only where both sides have >= MIN_SAMPLES samples."""
    order = commits_in_order(rows, machine)
    if len(order) < 2:
        return "", "", pd.DataFrame()
    prev, cur = order[-2], order[-1]
    mk = rows["machine"] == machine
    base_rows, head_rows = rows[mk & (rows["commit"] == prev)], rows[mk & (rows["commit"] == cur)]
    cmp = compare(Side(prev, prev, machine, base_rows), Side(cur, cur, machine, head_rows), th)
    cmp = cmp[cmp["verdict"].isin(["regressed", "improved"])]
    nb = dict(zip(zip(base_rows["benchmark"], base_rows["param_key"], strict=True), base_rows["n"], strict=True))
    nh = dict(zip(zip(head_rows["benchmark"], head_rows["param_key"], strict=True), head_rows["n"], strict=True))
    keep = [not (".time_" in str(b) and not enough_samples(nb.get((b, k)), nh.get((b, k))))
            for b, k in zip(cmp["benchmark"], cmp["param_key"], strict=True)]
    return prev, cur, cmp.iloc[[i for i, k in enumerate(keep) if k]]


def change_verdicts(ctx: Context, th: Thresholds) -> list[Verdict]:
    out = []
    for machine in sorted(ctx.rows["machine"].unique()):
        base, head, ch = newest_changes(ctx.rows, machine, th)
        if not base:
            out.append(Verdict(f"Changes on {machine}", "first run", "one commit only: nothing to compare yet",
                               "history.html", rank=10))
            continue
        reg, imp = ch[ch["verdict"] == "regressed"], ch[ch["verdict"] == "improved"]
        worst = reg.assign(r=reg["ratio"].map(lambda v: v if finite(v) else 0)).sort_values("r", ascending=False)
        names = "; ".join(f"{b.rsplit('.', 1)[-1]} [{k}] {human(r, 'x') if finite(r) else w}"
                          for b, k, r, w in zip(worst["benchmark"].head(3), worst["param_key"].head(3),
                                                worst["ratio"].head(3), worst["why"].head(3), strict=True))
        best = imp.assign(r=imp["ratio"].map(lambda v: v if finite(v) else 1)).sort_values("r")
        gains = "; ".join(f"{b.rsplit('.', 1)[-1]} [{k}] {human(r, 'x') if finite(r) else w}"
                          for b, k, r, w in zip(best["benchmark"].head(2), best["param_key"].head(2),
                                                best["ratio"].head(2), best["why"].head(2), strict=True))
        detail = "; ".join(x for x in (("worst: " + names) if names else "", ("best: " + gains) if gains else "") if x)
        cps = _change_points(ctx.rows, machine)
        if cps is not None and len(commits_in_order(ctx.rows, machine)) >= MIN_POINTS:
            recent = recent_regressions(cps, ctx.rows, GATE_LAST)
            detail += ("; " if detail else "") + (f"{len(recent)} regression change point(s) in the newest "
                                                  f"{GATE_LAST} commits" if len(recent) else
                                                  f"no regression change point in the newest {GATE_LAST} commits")
        out.append(Verdict(f"Changes on {machine}: {short(head)} vs {short(base)}",
                           f"{len(reg)} regression(s), {len(imp)} improvement(s)",
                           detail or f"nothing beyond x{th.factor} and asv's test",
                           "history.html", rank=10, tone="bad" if len(reg) else "good"))
    return out


def nightly_section(ctx: Context) -> tuple[Section, Verdict]:
    """The gate's measured false-alarm rate (A/A nights) per suite, its recall (canary) and the unstable list."""
    from reports.nightly import CANARY, canary_runs, rate, smallest_caught, suite_rates

    nights = ctx.nightly
    rates = suite_rates(nights)
    overall = [r for r in (rate(n) for n in nights) if r is not None]
    judged = int(rates["judged"].sum()) if not rates.empty else 0
    flagged = int(rates["flagged"].sum()) if not rates.empty else 0
    low = smallest_caught(nights)
    runs = canary_runs(nights)
    # What a catch means: the canary's own A/A ratio on nights it was not slowed (a slowdown smaller than
    # this noise is "caught" by luck as often as not).
    calm = [n["noise"][CANARY] for n in nights if not n.get("canary") and CANARY in n.get("noise", {})]
    sec = Section("Nightly gate: false alarms (A/A) and recall (canary)",
                  f"Each night the newest commit is benchmarked twice; every regression the gate (factor "
                  f"x{ctx.factor}, asv's test) flags between the two runs is a false alarm. {len(nights)} night(s), "
                  f"{sum(1 for n in nights if n.get('suites'))} with judged scenarios: {flagged} of {judged} "
                  "flagged (gated_wider: judged with an unstable benchmark's wider factor). The canary "
                  "(benchmarks/bench_canary.py) is "
                  "slowed by a known factor in the second run when the night is run with --canary F.")
    if not rates.empty:
        by_suite = rates.groupby("suite").agg(nights=("night", "nunique"), judged=("judged", "sum"),
                                              flagged=("flagged", "sum")).reset_index()
        by_suite["false_alarm_rate"] = by_suite["flagged"] / by_suite["judged"].where(by_suite["judged"] > 0)
        sec.plots.append(_rate_plot(rates))
        sec.tables.append(Table("nightly_false_alarms", by_suite, "false-alarm rate per suite over all nights",
                                units={"false_alarm_rate": "rel_plain"}))
        sec.tables.append(Table("nightly_nights", rates, "per night and suite", limit=20,
                                units={"false_alarm_rate": "rel_plain"}))
    if not runs.empty:
        sec.tables.append(Table("nightly_canary", runs, "canary runs per slowdown"))
    if calm:
        sec.text += (f" The canary's own A/A noise: up to x{max(calm):.3g} over {len(calm)} night(s) without a "
                     "slowdown; a slowdown below that is caught by chance, not by the gate's power.")
    sec.left_out = "" if low else ("Canary: no slowdown caught in every run yet." if not runs.empty else
                                   "Canary: not run yet (tox -e nightly -- --canary 1.3).")
    unst = ctx.unstable.get("benchmarks", {}) if isinstance(ctx.unstable, dict) else {}
    if unst:
        sec.tables.append(Table("nightly_unstable", pd.DataFrame(
            [{"benchmark": k, "aa_noise": v.get("noise"), "gated_with_factor": v.get("factor")}
             for k, v in unst.items()]), f"unstable: A/A noise above x{ctx.factor} in the newest "
            f"{ctx.unstable.get('nights', '?')} night(s); gated with factor x noise",
            units={"aa_noise": "x", "gated_with_factor": "x"}))
    fig = (f"{flagged / judged:.1%} false alarms" if judged else "no A/A night yet")
    detail = (f"{len(nights)} A/A night(s), {judged} judged scenario(s); latest night {overall[-1]:.1%}; "
              if overall else "run tox -e nightly; ")
    detail += (f"smallest canary slowdown caught every time: x{low:g}" if low else "canary: no slowdown caught "
               "reliably yet" if not runs.empty else "canary not run yet")
    detail += f" (canary A/A noise up to x{max(calm):.3g})" if calm and low else ""
    detail += f"; {len(unst)} unstable benchmark(s) gated wider" if unst else ""
    return sec, Verdict("Nightly gate (measured)", fig, detail, "history.html", rank=15,
                        tone="bad" if judged and flagged / judged > 0.05 else "")


def _rate_plot(rates: pd.DataFrame) -> Plot:
    fig, ax = figure(7, 3.0)
    nights = list(dict.fromkeys(rates["night"]))
    dates = dict(zip(rates["night"], rates["date"], strict=True))
    suites = sorted(rates["suite"].unique())
    width = 0.8 / max(1, len(suites))
    for j, suite in enumerate(suites):
        g = rates[rates["suite"] == suite]
        xs = [nights.index(d) + j * width for d in g["night"]]
        ax.bar(xs, [100 * (v if finite(v) else 0) for v in g["false_alarm_rate"]], width=width, label=suite)
    labels = [f"#{d} {str(dates[d])[5:16].replace('T', ' ')}" for d in nights]
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(nights))], labels, rotation=30,
                  fontsize=7)
    ax.set_ylabel("false alarms (% of judged)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Plot("nightly_false_alarms", fig, "A/A false-alarm rate per night and suite",
                "Share of each suite's scenarios the gate flagged between two runs of the same commit, per night.")


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
    page.verdicts.extend(change_verdicts(ctx, th))
    nsec, nverdict = nightly_section(ctx)
    page.sections.append(nsec)
    page.verdicts.append(nverdict)
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
            sec.tables.append(Table(f"history_regressions_{_safe(machine)}", reg, "regressions",
                                    units={"base_value": "@unit", "head_value": "@unit"}))
        if not aside.empty:
            sec.text += (f" {len(aside)} time_* change(s) beyond the factor set aside: fewer than {MIN_SAMPLES} "
                         "samples on a side.")
            sec.tables.append(Table(f"history_unjudged_{_safe(machine)}", aside, "set aside: too few samples",
                                    units={"base_value": "@unit", "head_value": "@unit"}))
        cps = _change_points(ctx.rows, machine)
        if cps is None:
            sec.text += " Change points: not computed (apache-otava not installed)."
        elif len(commits) >= MIN_POINTS:
            sec.text += (f" Change points (E-Divisive with a t-test, p < {MAX_PVALUE}, over every commit): "
                         f"{len(cps)} found.")
            if not cps.empty:
                sec.tables.append(Table(f"history_change_points_{_safe(machine)}", cps, "change points, newest first",
                                        show=["benchmark", "scenario", "commit", "direction", "mean_before",
                                              "mean_after", "magnitude", "pvalue"],
                                        units={"mean_before": "@unit", "mean_after": "@unit", "magnitude": "rel",
                                               "pvalue": "p"}))
        hist = history_table(ctx.rows, machine)
        if not hist.empty:
            commit_cols = [c for c in hist.columns if c not in ("series", "unit", "n per commit")]
            shown = ["series", *commit_cols[-SHOWN_COMMITS:], "n per commit"]
            sec.tables.append(Table(f"history_{_safe(machine)}", hist,
                                    f"headline values, newest {min(SHOWN_COMMITS, len(commit_cols))} commits shown",
                                    show=shown, units={c: "@unit" for c in commit_cols}))
            if len(commits) >= 2:
                sec.plots.extend(_plots(ctx.rows, machine, cps))
        page.sections.append(sec)
    return page


def _change_points(rows: pd.DataFrame, machine: str) -> pd.DataFrame | None:
    """The machine's change points, or None when Otava is not installed."""
    try:
        import otava.analysis  # noqa: F401
    except ImportError:
        return None
    return change_points(rows, [machine])


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text)
