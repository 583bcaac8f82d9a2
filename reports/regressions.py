"""Compare two asv runs and say what regressed, without crying wolf on a noisy machine.

Timings: asv's own test (asv.commands.compare._is_result_better: Mann-Whitney U on the raw samples
when both runs recorded them, else 99% confidence-interval overlap, and always the factor threshold).
Quality metrics (1-AUC, logloss, NE) are deterministic for a seed, so they get absolute thresholds.
Metrics where higher is better (efficiency, samples/s) are compared on their reciprocal.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError
from reports.asv_results import load_benchmarks_json, rows_from_result

# All lower-is-better AUC figures: 1-AUC, and AUC lost to compression or a comm hook (baseline - variant).
QUALITY_AUC = re.compile(r"auc_gap|one_minus_auc|auc_loss")
QUALITY_LOSS = re.compile(r"logloss|normalized_entropy|(^|_)ne($|_)")
HIGHER_IS_BETTER = re.compile(
    r"efficiency|samples_per_s|throughput|(^|_)auc$|accuracy|speedup|roofline_fraction|flops_per_s|bytes_per_s")


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression."""

    factor: float = 1.1
    auc_drop: float = 0.001
    logloss_rise: float = 0.001
    use_stats: bool = True

    def validate(self) -> Thresholds:
        if not self.factor >= 1.0:
            raise UsageError(f"--factor {self.factor}: must be a number >= 1.0 (e.g. 1.1 = 10% slower)")
        if not self.auc_drop >= 0:
            raise UsageError(f"--auc-drop {self.auc_drop}: must be >= 0 (absolute AUC, e.g. 0.001)")
        if not self.logloss_rise >= 0:
            raise UsageError(f"--logloss-rise {self.logloss_rise}: must be >= 0 (absolute, e.g. 0.001)")
        return self


@dataclass
class Side:
    """One side of a comparison: its rows and where they came from."""

    label: str
    commit: str
    machine: str
    rows: pd.DataFrame


def _load_result_file(path: Path) -> Any:
    from asv import util
    from asv.results import Results

    try:
        return Results.load(str(path))
    except (util.UserError, ValueError, KeyError, OSError) as exc:
        raise UsageError(f"{path}: unreadable asv results file: {exc}") from None


def machines_in(results_dir: Path) -> list[str]:
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir() if (p / "machine.json").is_file())


def resolve_side(ref: str, flag: str, results_dir: Path, machine: str | None) -> Side:
    """REF is a path to a results JSON file, or a commit (prefix) with results on the machine."""
    from asv import util
    from asv.results import get_result_hash_from_prefix, iter_results_paths

    path = Path(ref)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise UsageError(f"{flag} {ref}: no such results file")
        result = _load_result_file(path)
        # benchmarks.json (names of parameters, units) sits in the results dir: beside a copied file,
        # two levels up inside a results store, or in --results.
        bench: dict[str, Any] = {}
        for d in (path.parent, path.parent.parent, results_dir):
            if d.is_dir() and (d / "benchmarks.json").is_file():
                bench = load_benchmarks_json(d)
                break
        mname = (result.params or {}).get("machine", path.parent.name)
        rows = rows_from_result(result, bench, mname)
        return Side(ref, result.commit_hash or "", mname, pd.DataFrame(rows))
    if not results_dir.is_dir():
        raise UsageError(f"--results {results_dir}: no such directory; give asv's results_dir (default .asv/results)")
    machines = machines_in(results_dir)
    if machine is None:
        if len(machines) != 1:
            names = ", ".join(machines) or "none"
            raise UsageError(f"{flag} {ref}: {len(machines)} machines in {results_dir}; pick one with --machine "
                             f"(available: {names})")
        machine = machines[0]
    elif machine not in machines:
        raise UsageError(f"--machine {machine}: no results for it in {results_dir}; available: "
                         f"{', '.join(machines) or 'none'}")
    if not re.fullmatch(r"[0-9a-fA-F]{4,40}", ref):
        raise UsageError(f"{flag} {ref}: not a commit hash (4-40 hex digits) nor a results .json file")
    try:
        short = get_result_hash_from_prefix(str(results_dir), machine, ref.lower())
    except util.UserError as exc:
        raise UsageError(f"{flag} {ref}: {exc}") from None
    if short is None:
        raise UsageError(f"{flag} {ref}: no results for this commit on machine {machine} in {results_dir}")
    benchmarks = load_benchmarks_json(results_dir)
    rows: list[dict[str, Any]] = []
    commit = short
    # asv's own iterator logs and skips unreadable files; load each one so bad input is an error.
    for root, filename, _m in iter_results_paths(str(results_dir / machine)):
        if filename.split("-")[0] != short:
            continue
        result = _load_result_file(Path(root) / filename)
        rows.extend(rows_from_result(result, benchmarks, machine))
        commit = result.commit_hash
    if not rows:
        raise UsageError(f"{flag} {ref}: the results files for this commit hold no benchmarks")
    return Side(ref, commit, machine, pd.DataFrame(rows))


def kind_of(metric: str, btype: str) -> str:
    """'auc', 'loss' (absolute thresholds), 'higher' (reciprocal), or 'lower' (asv's default)."""
    if QUALITY_AUC.search(metric):
        return "auc"
    if QUALITY_LOSS.search(metric):
        return "loss"
    if btype == "track" and HIGHER_IS_BETTER.search(metric):
        return "higher"
    return "lower"


def _ss(row: pd.Series) -> tuple[dict[str, Any] | None, list[float] | None] | None:
    stats = {k: row[c] for k, c in (("ci_99_a", "ci_lo"), ("ci_99_b", "ci_hi"), ("q_25", "q25"), ("q_75", "q75"),
                                     ("repeat", "repeat"), ("number", "number")) if _num(row[c])}
    if "ci_99_a" not in stats or "ci_99_b" not in stats:
        return None
    samples = row["samples"] if isinstance(row["samples"], list) else None
    return stats, samples


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def judge(base: pd.Series, head: pd.Series, th: Thresholds) -> tuple[str, str]:
    """(verdict, why): verdict in regressed / improved / same / failed / fixed / skipped / incomparable."""
    from asv.commands.compare import _is_result_better

    if base["status"] == "ok" and head["status"] == "failed":
        return "regressed", "now fails"
    if base["status"] == "failed" and head["status"] == "ok":
        return "fixed", "failed before"
    if head["status"] == "failed":  # never hidden among the skips: it did not run at base either
        return "failed", "still fails" if base["status"] == "failed" else f"fails ({base['status']} before)"
    if base["status"] != "ok" or head["status"] != "ok":
        return "skipped", f"{base['status']} -> {head['status']}"
    if base["version"] and head["version"] and base["version"] != head["version"]:
        return "incomparable", "benchmark code changed"
    b, h = float(base["value"]), float(head["value"])
    kind = kind_of(head["metric"], head["type"])
    if kind == "auc":
        drop = h - b  # the metric is 1-AUC: a rise is an AUC drop
        if drop > th.auc_drop:
            return "regressed", f"AUC dropped {drop:.4g} > {th.auc_drop}"
        return ("improved", f"AUC rose {-drop:.4g}") if -drop > th.auc_drop else ("same", "")
    if kind == "loss":
        rise = h - b
        if rise > th.logloss_rise:
            return "regressed", f"rose {rise:.4g} > {th.logloss_rise}"
        return ("improved", f"fell {-rise:.4g}") if -rise > th.logloss_rise else ("same", "")
    ss_b, ss_h = _ss(base), _ss(head)
    if kind == "higher":
        if b <= 0 or h <= 0:
            return "same", "non-positive value"
        b, h, ss_b, ss_h = 1 / b, 1 / h, None, None
    if b <= 0 or h <= 0:
        # A ratio test is meaningless across zero (asv's own test flags identical negative values):
        # compare the change with the factor's share of the larger magnitude instead.
        if b == h:
            return "same", ""
        margin = (th.factor - 1) * max(abs(b), abs(h))
        if h - b > margin:
            return "regressed", f"rose {h - b:.4g} > {margin:.4g} (factor on magnitude; values cross or touch zero)"
        if b - h > margin:
            return "improved", f"fell {b - h:.4g} > {margin:.4g} (factor on magnitude; values cross or touch zero)"
        return "same", ""
    use = th.use_stats and ss_b is not None and ss_h is not None
    how = "Mann-Whitney/CI + factor" if use else "factor only"
    if _is_result_better(b, h, ss_b, ss_h, th.factor, use_stats=use):
        return "regressed", f"worse by more than x{th.factor} ({how})"
    if _is_result_better(h, b, ss_h, ss_b, th.factor, use_stats=use):
        return "improved", f"better by more than x{th.factor} ({how})"
    return "same", ""


def series_key(benchmark: str, param_key: str) -> str:
    """How one benchmark scenario is named in the unstable list: "bench.Class.time_x [framework=torch]"."""
    return f"{benchmark} [{param_key}]" if param_key else str(benchmark)


def compare(base: Side, head: Side, th: Thresholds, wider: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per benchmark present on either side, with the verdict and ratio head/base. ``wider``: a
    factor per unstable scenario (series_key, or the benchmark name for all its scenarios), used instead
    of ``th.factor`` for it."""
    th.validate()
    wider = wider or {}
    key = ["benchmark", "param_key"]
    multi_env = base.rows["env"].nunique() > 1 or head.rows["env"].nunique() > 1
    if multi_env:
        key.append("env")
    b = base.rows.set_index(key)
    h = head.rows.set_index(key)
    out = []
    for k in sorted(set(b.index) | set(h.index), key=str):
        if k not in b.index or k not in h.index:
            row = (h if k in h.index else b).loc[k]
            out.append({**dict(zip(key, k, strict=False)), "metric": row["metric"], "unit": row["unit"],
                        "base": row["value"] if k in b.index else None, "head": row["value"] if k in h.index else None,
                        "ratio": None, "verdict": "missing", "why": "only in " + ("head" if k in h.index else "base")})
            if k in h.index and row["status"] == "failed":
                out[-1].update(verdict="failed", why="fails (not in base)")
            continue
        rb, rh = b.loc[k], h.loc[k]
        wide = wider.get(series_key(k[0], k[1]), wider.get(k[0]))
        verdict, why = judge(rb, rh, replace(th, factor=max(th.factor, wide)) if wide else th)
        if wide and why:
            why += f" (unstable: wider factor x{max(th.factor, wide):.3g})"
        ratio = (rh["value"] / rb["value"]) if rb["status"] == rh["status"] == "ok" and rb["value"] else None
        out.append({**dict(zip(key, k, strict=False)), "metric": rh["metric"], "unit": rh["unit"], "base": rb["value"],
                    "head": rh["value"], "ratio": ratio, "verdict": verdict, "why": why})
    return pd.DataFrame(out, columns=[*key, "metric", "unit", "base", "head", "ratio", "verdict", "why"])


def fmt_value(v: Any, unit: str | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit == "seconds":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v:.3g} s"
    if unit == "bytes":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v:.0f} B"
    return f"{v:.4g}" + (f" {unit}" if unit and unit not in ("unit",) else "")


def display_table(cmp: pd.DataFrame, only_changed: bool = False) -> pd.DataFrame:
    """Human-readable columns; regressions first."""
    order = {"regressed": 0, "failed": 1, "incomparable": 2, "missing": 3, "improved": 4, "fixed": 5, "same": 6,
             "skipped": 7}
    t = cmp.copy()
    if only_changed:
        t = t[t["verdict"].isin(["regressed", "failed", "improved", "fixed", "incomparable"])]
    t = t.assign(_o=t["verdict"].map(order)).sort_values(["_o", "benchmark", "param_key"]).drop(columns="_o")
    return pd.DataFrame({
        "verdict": t["verdict"], "benchmark": t["benchmark"], "params": t["param_key"],
        "base": [fmt_value(v, u) for v, u in zip(t["base"], t["unit"], strict=False)],
        "head": [fmt_value(v, u) for v, u in zip(t["head"], t["unit"], strict=False)],
        "ratio": [f"{r:.3f}" if isinstance(r, float) and not math.isnan(r) else "" for r in t["ratio"]],
        "why": t["why"],
    })


def markdown_summary(cmp: pd.DataFrame, base: Side, head: Side, th: Thresholds) -> str:
    counts = cmp["verdict"].value_counts().to_dict()
    reg = cmp[cmp["verdict"] == "regressed"]
    lines = [
        f"# Benchmark regressions: {head.commit[:8]} vs {base.commit[:8]}",
        "",
        f"Machine: `{head.machine}` (base on `{base.machine}`). Thresholds: time/size factor x{th.factor} "
        f"(with asv's Mann-Whitney/CI test where samples exist), AUC drop > {th.auc_drop}, "
        f"logloss/NE rise > {th.logloss_rise}.",
        "",
        "Counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        "",
    ]
    lines.append(f"**{len(reg)} regression(s).**" if len(reg) else "**No regressions.**")
    failing = int((cmp["verdict"] == "failed").sum())
    if failing:
        lines.append(f"**{failing} benchmark(s) failing** that did not run at base either.")
    changed = display_table(cmp, only_changed=True)
    if not changed.empty:
        lines += ["", _md_table(changed)]
    return "\n".join(lines) + "\n"


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out)


def check_same_machine(base: Side, head: Side, cross_machine: bool = False) -> str | None:
    """Two machines' timings differ by the hardware, not the code: refuse (UsageError), or with
    ``cross_machine`` return the one-line note to print."""
    if base.machine == head.machine:
        return None
    if not cross_machine:
        raise UsageError(f"--base {base.label} is from machine {base.machine}, --head {head.label} from machine "
                         f"{head.machine}: regressions compare two runs of one machine; give both from one, or "
                         "add --cross-machine to compare anyway")
    return f"note: comparing two machines (base {base.machine}, head {head.machine}): differences include the hardware"


def run_cli(base: str, head: str, results: str, machine: str | None, th: Thresholds,
            markdown: str | None = None, only_changed: bool = False, regressed_list: str | None = None,
            cross_machine: bool = False, unstable: str | None = None) -> int:
    """Print the table, write the Markdown summary; 1 if anything regressed (a number that became a failure
    included), else 0. Benchmarks that fail at head without having run at base are listed and counted."""
    th.validate()
    rdir = Path(results)
    b = resolve_side(base, "--base", rdir, machine)
    h = resolve_side(head, "--head", rdir, machine)
    note = check_same_machine(b, h, cross_machine)
    if note:
        print(note)
    cmp = compare(b, h, th, load_unstable(unstable) if unstable else None)
    table = display_table(cmp, only_changed=only_changed)
    with pd.option_context("display.max_rows", None, "display.max_colwidth", 60, "display.width", 200):
        print(table.to_string(index=False) if not table.empty else "(no benchmarks changed)")
    n = int((cmp["verdict"] == "regressed").sum())
    failing = int((cmp["verdict"] == "failed").sum())
    also = f"; {failing} failing that did not run at base either" if failing else ""
    print(f"\n{n} regression(s) in {h.commit[:8]} vs {b.commit[:8]} on {h.machine}{also}")
    if markdown:
        try:
            Path(markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(markdown).write_text(markdown_summary(cmp, b, h, th))
        except OSError as exc:
            raise UsageError(f"--markdown {markdown}: cannot write: {exc.strerror}") from None
    if regressed_list:
        # One benchmark name a line: what nightly.sh re-runs to confirm a regression before reporting it.
        names = sorted(set(cmp.loc[cmp["verdict"] == "regressed", "benchmark"]))
        try:
            Path(regressed_list).write_text("".join(f"{name}\n" for name in names))
        except OSError as exc:
            raise UsageError(f"--regressed-list {regressed_list}: cannot write: {exc.strerror}") from None
    return 1 if n else 0


def load_unstable(path: str) -> dict[str, float]:
    """The nightly job's unstable list: {"benchmarks": {series_key: {"noise": r, "factor": f}, ...}}."""
    import json

    try:
        data = json.loads(Path(path).read_text())
        return {str(k): float(v["factor"]) for k, v in data.get("benchmarks", {}).items()}
    except FileNotFoundError:
        return {}  # no A/A night yet: nothing is known to be unstable
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"--unstable {path}: not an unstable list written by `reports aa` ({exc})") from None


def default_results_dir() -> str:
    return os.environ.get("RECSYS_RESULTS_DIR", ".asv/results")
