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
    """``frame`` goes whole to the CSV/JSON twins; the page shows ``show`` (all columns when empty),
    at most ``limit`` rows, each cell in human units (``units`` overrides fmt.unit_of per column; the
    value "@unit" takes the unit from the row's own "unit" column)."""

    name: str
    frame: pd.DataFrame
    caption: str = ""
    highlight: str = ""  # a column: rows where it is non-empty are highlighted (flags)
    show: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    limit: int = 40


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
    left_out: str = ""  # one line counting the skipped/failed combinations and their reasons (not rows of nan)


@dataclass
class Verdict:
    """One headline of the index: what a page found, its figure, and where to read more.

    ``rank`` orders the index (changes first, then framework standing, compression, roofline, energy)."""

    title: str
    figure: str
    detail: str = ""
    href: str = ""
    rank: int = 50
    tone: str = ""  # "bad" (a regression), "good", or "" (neutral)


@dataclass
class Page:
    slug: str
    title: str
    intro: str
    sections: list[Section] = field(default_factory=list)
    empty_reason: str = ""  # set when the page has no data: shown plainly instead of sections
    verdicts: list[Verdict] = field(default_factory=list)

    def summary(self) -> str:
        if self.empty_reason:
            return "no data: " + self.empty_reason
        n_t = sum(len(s.tables) for s in self.sections)
        n_p = sum(len(s.plots) for s in self.sections)
        return f"{n_t} table(s), {n_p} plot(s)"


def left_out_line(reasons: list[str], what: str = "combination") -> str:
    """'12 combinations not shown: 8 skipped (no GPU), 4 failed (...)' from one reason per combination."""
    if not reasons:
        return ""
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(reasons)} {what}(s) not shown: {parts}."


def ratio_axis(ax: Any) -> None:
    """Log x axis labelled 0.5x, 1x, 2x (not 2x10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))


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
