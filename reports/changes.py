"""Change points over each benchmark's history: E-Divisive with a t-test (Apache Otava, as in Hunter).

Why: comparing neighbouring commits sees a slow drift as many small steps below the factor, and one
noisy night as a step; a change point is where the whole series' mean moved, judged over every commit
before and after it. Each (machine, benchmark, parameter combination) is one series of asv medians in
commit order; ``changes`` finds its change points, their magnitude (mean after / mean before - 1) and
p-value, and calls a change a regression when it moves the figure the worse way (regressions.kind_of).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError
from reports.asv_results import commits_in_order
from reports.regressions import kind_of

MAX_PVALUE = 0.001  # Otava's default: a change point must be this unlikely under "no change"
MIN_POINTS = 6  # shorter series are not searched: E-Divisive needs a few points on each side
COLUMNS = ["machine", "benchmark", "scenario", "commit", "index", "points", "mean_before", "mean_after", "magnitude",
           "pvalue", "direction", "unit"]


@dataclass(frozen=True)
class ChangePoint:
    index: int  # position in the series of the first point after the change
    pvalue: float
    mean_before: float
    mean_after: float

    @property
    def magnitude(self) -> float:
        """Relative change of the mean: +0.3 = 30% higher after."""
        return self.mean_after / self.mean_before - 1 if self.mean_before else math.inf


def detect(values: list[float], max_pvalue: float = MAX_PVALUE, min_magnitude: float = 0.0) -> list[ChangePoint]:
    """Change points of one series (oldest first) by Otava's E-Divisive with a Student t-test."""
    from otava.analysis import compute_change_points

    if len(values) < MIN_POINTS:
        return []
    cps, _weak = compute_change_points(values, window_len=max(30, len(values)), max_pvalue=max_pvalue,
                                       min_magnitude=min_magnitude)
    return [ChangePoint(int(c.index), float(c.stats.pvalue), float(c.stats.mean_1), float(c.stats.mean_2))
            for c in cps]


def series(rows: pd.DataFrame, machine: str) -> dict[tuple[str, str], pd.DataFrame]:
    """(benchmark, param_key) -> its ok values on the machine in commit order (columns commit, value, unit)."""
    order = {c: i for i, c in enumerate(commits_in_order(rows, machine))}
    sub = rows[(rows["machine"] == machine) & (rows["status"] == "ok")]
    sub = sub.assign(pos=sub["commit"].map(order)).sort_values("pos")
    return {(b, k): g.drop_duplicates("commit", keep="last")[["commit", "pos", "value", "unit", "metric", "type"]]
            for (b, k), g in sub.groupby(["benchmark", "param_key"])}


def change_points(rows: pd.DataFrame, machines: list[str], max_pvalue: float = MAX_PVALUE) -> pd.DataFrame:
    """Every change point of every series on the machines, newest first."""
    out: list[dict[str, Any]] = []
    for machine in machines:
        for (bench, pkey), s in series(rows, machine).items():
            values = [float(v) for v in s["value"]]
            kind = kind_of(str(s["metric"].iloc[0]), str(s["type"].iloc[0]))
            for cp in detect(values, max_pvalue):
                worse = (cp.mean_after < cp.mean_before) if kind == "higher" else (cp.mean_after > cp.mean_before)
                out.append({"machine": machine, "benchmark": bench, "scenario": pkey,
                            "commit": s["commit"].iloc[cp.index], "index": int(s["pos"].iloc[cp.index]),
                            "points": len(values), "mean_before": cp.mean_before, "mean_after": cp.mean_after,
                            "magnitude": cp.magnitude, "pvalue": cp.pvalue,
                            "direction": "regression" if worse else "improvement", "unit": s["unit"].iloc[0]})
    frame = pd.DataFrame(out, columns=COLUMNS)
    return frame.sort_values(["index", "machine", "benchmark"], ascending=[False, True, True]).reset_index(drop=True)


def recent_regressions(cps: pd.DataFrame, rows: pd.DataFrame, last: int) -> pd.DataFrame:
    """Regression change points that lie in each machine's newest ``last`` commits."""
    if cps.empty:
        return cps
    newest = {m: len(commits_in_order(rows, m)) for m in cps["machine"].unique()}
    keep = [d == "regression" and i >= newest[m] - last
            for m, i, d in zip(cps["machine"], cps["index"], cps["direction"], strict=True)]
    return cps[keep]


def _line(r: pd.Series) -> str:
    from reports.regressions import fmt_value

    return (f"{r['direction']:<11} {r['machine']}  {r['benchmark']} [{r['scenario'] or '-'}]  "
            f"at {str(r['commit'])[:8]} "
            f"(commit {r['index'] + 1} of {r['points']}): {fmt_value(r['mean_before'], r['unit'])} -> "
            f"{fmt_value(r['mean_after'], r['unit'])} ({r['magnitude'] * 100:+.1f}%), p={r['pvalue']:.2g}")


def run_cli(results: str, machine: str | None, last: int, max_pvalue: float = MAX_PVALUE) -> int:
    """Print the change points; 1 when a regression change point is in the newest ``last`` commits."""
    from reports.asv_results import load_store

    if last < 1:
        raise UsageError(f"--last {last}: must be a whole number >= 1 (how many newest commits to gate on)")
    if not 0 < max_pvalue < 1:
        raise UsageError(f"--max-pvalue {max_pvalue}: must be between 0 and 1 (e.g. 0.001)")
    try:
        import otava.analysis  # noqa: F401
    except ImportError:
        raise UsageError("reports changes needs Apache Otava: pip install apache-otava "
                         "(or the project's 'report' extra)") from None
    store = load_store(results)
    if store.rows.empty:
        raise UsageError(f"--results {results}: no asv results files found; run the suite first")
    names = sorted(store.rows["machine"].unique())
    if machine is not None and machine not in names:
        raise UsageError(f"--machine {machine}: no results for it; machines with results: {', '.join(names)}")
    machines = [machine] if machine else names
    cps = change_points(store.rows, machines, max_pvalue)
    recent = recent_regressions(cps, store.rows, last)
    for m in machines:
        n = len(commits_in_order(store.rows, m))
        print(f"{m}: {n} commit(s), {int((cps['machine'] == m).sum())} change point(s)"
              + ("" if n >= MIN_POINTS else f" (fewer than {MIN_POINTS} commits: nothing searched)"))
    for _, r in cps.iterrows():
        print("  " + _line(r))
    if not recent.empty:
        print(f"{len(recent)} regression change point(s) in the newest {last} commit(s)")
        return 1
    print(f"no regression change point in the newest {last} commit(s)")
    return 0
