"""Numbers as a person reads them: the unit in the cell, scaled (12.3 ms, 4.1 MB, 143 k samples/s, 2.1 J).

Why one module: every table cell, verdict and plot label goes through ``human`` so a figure reads the
same everywhere; ``unit_of`` guesses a column's unit from its name so page modules rarely have to say.
A missing figure prints as an em dash, never as ``nan`` or ``None``.
"""

from __future__ import annotations

import math
import re
from typing import Any

MISSING = "\u2014"

# Column-name patterns -> unit, first match wins. Units: s, ms, bytes, samples/s, J, W, x (ratio), frac, int.
_BY_NAME: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), u) for p, u in (
    (r"max_over_mean|_over_|ratio|speedup", "x"),  # before the units: "peak_rss_bytes_max_over_mean" is a ratio
    (r"(^|[._ ])n$|_n$|(^| )n |steps$|world_size$|^rank$|batches$|commits$", "int"),
    (r"bytes", "bytes"),
    (r"samples_per_s|samples/s", "samples/s"),
    (r"joules", "J"),
    (r"watts", "W"),
    (r"(_ms|ms\.(median|mean|min|max|ci_low|ci_high|p50|p95|p99))$|^latency_ms\.|step_ms|batch_ms", "ms"),
    (r"(^|_)seconds$|_s$", "s"),
    (r"ratio|_over_|speedup|max_over_mean|geomean|ci99_(low|high)", "x"),
    (r"efficiency|fraction|relative_auc", "frac"),
))


def unit_of(column: str) -> str:
    """The unit a column's name implies ('' when it says nothing)."""
    for pat, unit in _BY_NAME:
        if pat.search(str(column)):
            return unit
    return ""


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sig(v: float, digits: int = 3) -> str:
    """`digits` significant figures without an exponent for ordinary magnitudes."""
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if mag >= 6 or mag < -4:
        return f"{v:.{digits - 1}e}"
    decimals = max(0, digits - 1 - mag)
    return f"{v:,.{decimals}f}"


def _scaled(v: float, steps: tuple[tuple[float, str], ...], digits: int = 3) -> str:
    for scale, name in steps:
        if abs(v) >= scale:
            return f"{_sig(v / scale, digits)} {name}".rstrip()
    scale, name = steps[-1]
    return f"{_sig(v / scale, digits)} {name}".rstrip()


_TIME = ((1.0, "s"), (1e-3, "ms"), (1e-6, "\u00b5s"), (1e-9, "ns"))
_BYTES = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))
_RATE = ((1e9, "G samples/s"), (1e6, "M samples/s"), (1e3, "k samples/s"), (1.0, "samples/s"))
_ENERGY = ((1e6, "MJ"), (1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"))
_POWER = ((1e3, "kW"), (1.0, "W"), (1e-3, "mW"))
ASV_UNITS = {"seconds": "s", "bytes": "bytes", "samples/s": "samples/s", "J": "J", "joules": "J"}


def human(v: Any, unit: str = "") -> str:
    """One cell's text. ``unit``: s, ms, bytes, samples/s, J, W, x, frac, int, or any other label
    (appended as is); asv's 'seconds' and 'bytes' are understood."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return human(v.item(), unit)
        except (ValueError, AttributeError):
            pass
    if not isinstance(v, (int, float)):
        text = str(v)
        return MISSING if text in ("nan", "None", "NaN", "") else text
    if isinstance(v, float) and math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    unit = ASV_UNITS.get(unit, unit)
    if unit == "s":
        return _scaled(float(v), _TIME)
    if unit == "ms":
        return _scaled(float(v) / 1e3, _TIME)
    if unit == "bytes":
        return _scaled(float(v), _BYTES)
    if unit == "samples/s":
        return _scaled(float(v), _RATE)
    if unit == "J":
        return _scaled(float(v), _ENERGY)
    if unit == "W":
        return _scaled(float(v), _POWER)
    if unit == "x":
        return f"{_sig(float(v), 3)}x"
    if unit == "frac":
        return f"{float(v):.3f}"
    if unit == "rel_plain":
        return f"{float(v) * 100:.1f}%"
    if unit == "rel":
        return pct(float(v))
    if unit == "p":
        return f"{float(v):.2g}"
    if unit == "int":
        return f"{int(round(v)):,}" if float(v).is_integer() else _sig(float(v))
    if isinstance(v, int):
        return f"{v:,}" + (f" {unit}" if unit else "")
    text = f"{v:.4g}" if 1e-4 <= abs(v) < 1e6 or v == 0 else _sig(float(v))
    return text + (f" {unit}" if unit and unit != "unit" else "")


def pct(rel: float) -> str:
    """+12.3% / -4.0% from a relative change (0.123)."""
    return f"{rel * 100:+.1f}%" if is_number(rel) else MISSING
