"""Page model shared by the page builders: sections of text, tables and PNG plots.

Why: page modules only compute DataFrames and figures; writing files (PNG, CSV, JSON, HTML) is
done in one place (site.py) so every table gets its CSV/JSON twin and every image a real file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Table:
    name: str
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Plot:
    name: str
    figure: Any  # matplotlib Figure
    alt: str


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
