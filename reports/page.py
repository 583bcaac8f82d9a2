"""Page model shared by the page builders: sections of text, tables and PNG plots.

Why: page modules only compute DataFrames and figures; writing files (PNG, CSV, JSON, HTML) is
done in one place (site.py) so every table gets its CSV/JSON twin and every image a real file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recsys_impls.measure.stats import MIN_SAMPLES_FOR_CI


@dataclass
class Table:
    name: str
    frame: pd.DataFrame
    caption: str = ""
    highlight: str = ""  # a column: rows where it is non-empty are highlighted (flags)


@dataclass
class Plot:
    name: str
    figure: Any  # matplotlib Figure
    alt: str
    caption: str = ""  # shown under the image (what is drawn, its n, what was left out); alt when empty


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class Page:
    slug: str
    title: str
    intro: str
    sections: list[Section] = field(default_factory=list)
    empty_reason: str = ""  # set when the page has no data: shown plainly instead of sections

    def summary(self) -> str:
        if self.empty_reason:
            return "no data: " + self.empty_reason
        n_t = sum(len(s.tables) for s in self.sections)
        n_p = sum(len(s.plots) for s in self.sections)
        return f"{n_t} table(s), {n_p} plot(s)"


def figure(width: float = 7.0, height: float = 4.0, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure (Agg backend, no display needed) and its axes (a list when ncols > 1)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols)
    return fig, axes


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def geomean(values: list[float]) -> float:
    vals = [v for v in values if finite(v) and v > 0]
    if not vals:
        return float("nan")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def short(commit: str) -> str:
    return str(commit)[:8]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when x should be small and y large (bytes vs AUC)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


# Fewer samples than this give no ratio, no verdict and no confidence interval anywhere in the report:
# the same bound below which a record's statistics carry no interval.
MIN_SAMPLES = MIN_SAMPLES_FOR_CI


def enough_samples(*counts: Any) -> bool:
    """Every count is a number >= MIN_SAMPLES."""
    return all(finite(n) and n >= MIN_SAMPLES for n in counts)


def n_label(n: Any) -> str:
    """How the report names a figure's sample count when it is too small to compare."""
    if not finite(n) or n <= 1:
        return "single sample"
    if n < MIN_SAMPLES:
        return f"n={int(n)}, too few for a CI"
    return f"n={int(n)}"


def too_few_label(counts: dict[str, Any]) -> str:
    """'single sample' / 'n=3, too few for a CI' for the smallest count, naming each side's n."""
    smallest = min((n if finite(n) else 0 for n in counts.values()), default=0)
    sides = ", ".join(f"{k} n={int(n) if finite(n) else '?'}" for k, n in counts.items())
    return f"{n_label(smallest)}: no ratio ({sides})"


def ratio_interval(a_lo: Any, a_hi: Any, b_lo: Any, b_hi: Any) -> tuple[float | None, float | None]:
    """Conservative interval of a/b from the two intervals: a_lo/b_hi .. a_hi/b_lo (None when any
    bound is missing, infinite or not positive)."""
    if all(finite(x) and x > 0 for x in (a_lo, a_hi, b_lo, b_hi)):
        return a_lo / b_hi, a_hi / b_lo
    return None, None


RATIO_CI_NOTE = ("The interval of a ratio a/b is derived from the two figures' 99% intervals as "
                 "a_low/b_high .. a_high/b_low: conservative (its coverage is at least 98%).")


def add_sample_counts(piv: pd.DataFrame, rows: pd.DataFrame, module: str) -> pd.DataFrame:
    """Beside each time_* column of an asv pivot (context.asv_pivot: machine, params..., metrics),
    "<metric> n": the samples its median is taken over (track_* columns are one value each, n = 1)."""
    from reports.asv_results import latest_per_machine

    if piv.empty or rows.empty:
        return piv
    sub = latest_per_machine(rows)
    sub = sub[(sub["module"] == module) & (sub["status"] == "ok") & sub["metric"].str.startswith("time_")]
    out = piv.copy()
    for metric, g in sub.groupby("metric"):
        if metric not in out.columns:
            continue
        names = list(g["params"].iloc[0])
        counts = {(m, *(p.get(k) for k in names)): n for m, p, n in zip(g["machine"], g["params"], g["n"],
                                                                         strict=True)}
        keys = zip(out["machine"], *(out[k] for k in names), strict=True)
        out.insert(list(out.columns).index(metric) + 1, f"{metric} n", [counts.get(tuple(k)) for k in keys])
    return out
