"""The nightly gate's own measurements: its false-alarm rate (A/A), its recall (the canary), the
benchmarks too noisy for its factor (the unstable list), and the interleaved confirmation pass.

Why: a gate whose false-alarm rate is unknown is either ignored or trusted blindly. Each night
nightly.sh runs the newest commit twice; every regression the gate flags between the two runs is a
false alarm by construction. ``--canary F`` slows the canary benchmark by a known factor in the second
run, so the same pair also says whether a slowdown of F is caught. Both land in a small history file
(``history.json`` in the nightly folder, by default ``nightly/`` beside the results) that the history
page reads. A benchmark whose A/A ratio exceeded the factor in a recent night is unstable: it is listed
with its noise and gated with factor x noise instead of crying wolf.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError
from reports.regressions import Side, Thresholds, compare, load_unstable, resolve_side, series_key

HISTORY = "history.json"
UNSTABLE = "unstable.json"
KEEP_NIGHTS = 120
NOISE_NIGHTS = 14  # the unstable list looks at this many newest A/A nights
CANARY = "bench_canary.Canary.time_canary"
JUDGED = ("same", "regressed", "improved")


def suite_of(benchmark: str) -> str:
    return str(benchmark).split(".", 1)[0]


def aa_entry(first: Side, second: Side, th: Thresholds, wider: dict[str, float] | None = None,
             canary: float | None = None) -> dict[str, Any]:
    """One night: per suite, how many scenarios the gate judged and how many it flagged as regressed
    between two runs of the same commit; each scenario's A/A ratio (>= 1: the larger over the smaller);
    with ``canary``, whether the canary's known slowdown was flagged (the canary then is no A/A figure)."""
    cmp = compare(first, second, th, wider)
    entry: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": second.machine,
                             "commit": second.commit, "factor": th.factor, "suites": {}, "noise": {}, "canary": None}
    for _, r in cmp.iterrows():
        is_canary = r["benchmark"] == CANARY
        if is_canary and canary is not None:
            entry["canary"] = {"slowdown": canary, "flagged": r["verdict"] == "regressed",
                               "ratio": r["ratio"] if _pos(r["ratio"]) else None, "why": r["why"]}
            continue
        if r["verdict"] not in JUDGED:
            continue
        suite = entry["suites"].setdefault(suite_of(r["benchmark"]), {"judged": 0, "flagged": 0, "flagged_list": []})
        suite["judged"] += 1
        key = series_key(r["benchmark"], r["param_key"])
        if key in (wider or {}) or r["benchmark"] in (wider or {}):
            suite["gated_wider"] = suite.get("gated_wider", 0) + 1
        if r["verdict"] == "regressed":
            suite["flagged"] += 1
            suite["flagged_list"].append(series_key(r["benchmark"], r["param_key"]))
        if _pos(r["ratio"]):
            entry["noise"][series_key(r["benchmark"], r["param_key"])] = max(r["ratio"], 1 / r["ratio"])
    if canary is not None and entry["canary"] is None:
        entry["canary"] = {"slowdown": canary, "flagged": False, "ratio": None,
                           "why": f"{CANARY} not in both runs (did NIGHTLY_BENCH leave it out?)"}
    return entry


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def rate(entry: dict[str, Any], suite: str | None = None) -> float | None:
    """False-alarm rate of one night (all suites, or one): flagged / judged."""
    suites = [entry["suites"][suite]] if suite else list(entry["suites"].values())
    judged = sum(s["judged"] for s in suites)
    return sum(s["flagged"] for s in suites) / judged if judged else None


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable nightly history ({exc}); move it away to start a new one") from None
    if not isinstance(data, list):
        raise UsageError(f"{path}: not a nightly history (expected a JSON list of nights)")
    return data


def write_history(path: Path, nights: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(nights[-KEEP_NIGHTS:], indent=1))
    tmp.replace(path)


def unstable(nights: list[dict[str, Any]], factor: float) -> dict[str, Any]:
    """Scenarios whose A/A ratio went above ``factor`` in one of the newest NOISE_NIGHTS nights: their
    largest such ratio (the noise) and the factor they are gated with from now on (factor x noise)."""
    noise: dict[str, float] = {}
    for night in nights[-NOISE_NIGHTS:]:
        for key, r in night.get("noise", {}).items():
            noise[key] = max(noise.get(key, 1.0), float(r))
    worst = {k: v for k, v in noise.items() if v > factor}
    return {"factor": factor, "nights": min(len(nights), NOISE_NIGHTS),
            "benchmarks": {k: {"noise": round(v, 4), "factor": round(v * factor, 4)} for k, v in sorted(worst.items())}}


def canary_runs(nights: list[dict[str, Any]]) -> pd.DataFrame:
    """Per slowdown tried: runs, how many were flagged, and the median ratio measured (second / first run)."""
    rows = [n["canary"] for n in nights if isinstance(n.get("canary"), dict)]
    if not rows:
        return pd.DataFrame(columns=["slowdown", "runs", "caught", "measured_ratio"])
    df = pd.DataFrame(rows)
    df["ratio"] = pd.to_numeric(df.get("ratio"), errors="coerce")
    return (df.groupby("slowdown").agg(runs=("flagged", "size"), caught=("flagged", "sum"),
                                       measured_ratio=("ratio", "median")).reset_index().sort_values("slowdown"))


def smallest_caught(nights: list[dict[str, Any]]) -> float | None:
    """The smallest slowdown tried that was caught in every run, as was every larger slowdown tried."""
    runs = canary_runs(nights)
    best = None
    for _, r in runs.sort_values("slowdown", ascending=False).iterrows():
        if r["caught"] < r["runs"]:
            break
        best = float(r["slowdown"])
    return best


def suite_rates(nights: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per night and suite: judged, flagged, rate."""
    rows = []
    for i, n in enumerate(nights):
        for suite, s in sorted(n.get("suites", {}).items()):
            rows.append({"night": i + 1, "date": n.get("date"), "machine": n.get("machine"),
                         "commit": str(n.get("commit", ""))[:8],
                         "suite": suite, "judged": s["judged"], "gated_wider": s.get("gated_wider", 0),
                         "flagged": s["flagged"],
                         "false_alarm_rate": s["flagged"] / s["judged"] if s["judged"] else None,
                         "flagged_benchmarks": ", ".join(s.get("flagged_list", []))})
    return pd.DataFrame(rows)


def run_aa(first: str, second: str, results: str, machine: str | None, th: Thresholds, nightly_dir: str,
           canary: float | None = None) -> int:
    """Record one A/A night; print its false-alarm rate per suite and the unstable list. Exit 0, or with
    ``canary`` 1 when the canary's slowdown was not flagged (the gate missed a known regression)."""
    th.validate()
    if canary is not None and not 1.0 < canary <= 100:
        raise UsageError(f"--canary {canary}: give the slowdown the canary ran with, above 1 (e.g. 1.3)")
    rdir = Path(results)
    a, b = resolve_side(first, "--first", rdir, machine), resolve_side(second, "--second", rdir, machine)
    ndir = Path(nightly_dir)
    wider = load_unstable(str(ndir / UNSTABLE))
    entry = aa_entry(a, b, th, wider, canary)
    nights = [*read_history(ndir / HISTORY), entry]
    write_history(ndir / HISTORY, nights)
    unst = unstable(nights, th.factor)
    (ndir / UNSTABLE).write_text(json.dumps(unst, indent=1))
    for suite, s in sorted(entry["suites"].items()):
        print(f"A/A {suite}: {s['flagged']} of {s['judged']} flagged (false-alarm rate {rate(entry, suite):.1%})"
              + (f": {', '.join(s['flagged_list'])}" if s["flagged_list"] else ""))
    total = rate(entry)
    print(f"A/A all suites: false-alarm rate {total:.1%}" if total is not None else "A/A: nothing judged")
    for key, v in unst["benchmarks"].items():
        print(f"unstable: {key}: A/A noise x{v['noise']:.3g} > x{th.factor:g}, gated with x{v['factor']:.3g}")
    if canary is None:
        return 0
    c = entry["canary"]
    print(f"canary x{canary:g}: {'flagged' if c['flagged'] else 'NOT flagged'}"
          + (f" (measured x{c['ratio']:.3g})" if c["ratio"] else "") + (f": {c['why']}" if c["why"] else ""))
    low = smallest_caught(nights)
    print(f"smallest slowdown caught in every run so far: x{low:g}" if low else "no slowdown caught reliably yet")
    return 0 if c["flagged"] else 1


def run_confirm(pairs: list[list[str]], results: str, machine: str | None, th: Thresholds,
                unstable_file: str | None, markdown: str | None) -> int:
    """Interleaved confirmation: base and head re-measured in turns (base, head, base, head...); a
    regression stands only when every pair flags it. Exit 1 when one stands."""
    th.validate()
    if not pairs:
        raise UsageError("--pair BASE.json HEAD.json: give at least one pair of results files")
    rdir = Path(results)
    wider = load_unstable(unstable_file) if unstable_file else {}
    flagged: list[set[str]] = []
    ratios: dict[str, list[str]] = {}
    for i, (base, head) in enumerate(pairs):
        b = resolve_side(base, f"--pair {i + 1} base", rdir, machine)
        h = resolve_side(head, f"--pair {i + 1} head", rdir, machine)
        cmp = compare(b, h, th, wider)
        reg = cmp[cmp["verdict"] == "regressed"]
        keys = {series_key(r["benchmark"], r["param_key"]) for _, r in reg.iterrows()}
        flagged.append(keys)
        for _, r in cmp.iterrows():
            ratios.setdefault(series_key(r["benchmark"], r["param_key"]), []).append(
                f"x{r['ratio']:.3g}" if _pos(r["ratio"]) else str(r["why"] or r["verdict"]))
    confirmed = sorted(set.intersection(*flagged)) if flagged else []
    candidates = sorted(set.union(*flagged)) if flagged else []
    lines = [f"confirmed: {k} ({', '.join(ratios[k])})" for k in confirmed]
    lines += [f"not confirmed: {k} ({', '.join(ratios[k])})" for k in candidates if k not in confirmed]
    lines.append(f"{len(confirmed)} regression(s) confirmed in all {len(pairs)} interleaved base/head pair(s)")
    print("\n".join(lines))
    if markdown:
        try:
            Path(markdown).write_text("# Confirmation pass (base and head re-measured interleaved)\n\n"
                                      + "\n".join(f"- {ln}" for ln in lines) + "\n")
        except OSError as exc:
            raise UsageError(f"--markdown {markdown}: cannot write: {exc.strerror}") from None
    return 1 if confirmed else 0
