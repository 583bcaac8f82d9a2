"""Load asv's results store into one tidy pandas table, using asv's own loaders.

Why a tidy table: every page (framework, hardware, history...) is a filter + pivot of the same rows,
one row per (machine, commit, env, benchmark, parameter combination).
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError

COLUMNS = [
    "machine", "commit", "date", "env", "benchmark", "module", "group", "metric", "type", "unit",
    "params", "param_key", "value", "n", "ci_lo", "ci_hi", "q25", "q75", "repeat", "number", "samples",
    "version", "status",
]


@dataclass
class ResultStore:
    """Everything read from one results directory."""

    path: Path
    rows: pd.DataFrame
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_param(text: str) -> Any:
    """asv stores parameter values as repr strings ("'torch'"); give back the Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def param_key(params: dict[str, Any]) -> str:
    """A short, stable label for one parameter combination: "framework=torch, data=synthetic"."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def sample_count(value: Any, stats: dict[str, Any] | None, samples: Any) -> int | None:
    """How many independent samples asv's figure is the median of.

    asv's stats hold "repeat" = len(samples) (each sample the mean of "number" calls), so it is the
    count even when samples were not recorded. No stats (track_*, peakmem_*): one value, n = 1.
    ``asv run --quick`` times one call: repeat 1, number 1, bounds -inf..inf. None when there is no value.
    """
    if status_of(value) != "ok":
        return None
    if stats and isinstance(stats.get("repeat"), (int, float)) and not _isnan(stats["repeat"]):
        return int(stats["repeat"])
    if isinstance(samples, list) and samples:
        return len(samples)
    return 1


def status_of(value: Any) -> str:
    """asv's convention: None = failed, NaN = skipped."""
    if value is None:
        return "failed"
    if _isnan(value):
        return "skipped"
    return "ok"


def load_benchmarks_json(results_dir: Path) -> dict[str, dict[str, Any]]:
    """benchmarks.json (names, units, types, param names); empty when absent."""
    from asv import util

    path = results_dir / "benchmarks.json"
    if not path.is_file():
        return {}
    try:
        data = util.load_json(str(path), api_version=2)
    except util.UserError as exc:
        raise UsageError(f"--results {results_dir}: unreadable benchmarks.json: {exc}") from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def load_machines(results_dir: Path) -> dict[str, dict[str, Any]]:
    """machine.json of every machine folder (asv's machine record)."""
    out: dict[str, dict[str, Any]] = {}
    for sub in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        mfile = sub / "machine.json"
        if mfile.is_file():
            try:
                data = json.loads(mfile.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"--results {results_dir}: unreadable {mfile}: {exc}") from None
            out[str(data.get("machine", sub.name))] = data
    return out


def rows_from_result(result: Any, benchmarks: dict[str, dict[str, Any]], machine: str) -> list[dict[str, Any]]:
    """Unroll one asv Results object into rows, one per benchmark parameter combination."""
    rows = []
    for key in sorted(result.get_all_result_keys()):
        params = result.get_result_params(key) or []
        values = result.get_result_value(key, params)
        stats = result.get_result_stats(key, params)
        samples = result.get_result_samples(key, params)
        meta = benchmarks.get(key, {})
        names = meta.get("param_names") or [f"param{i + 1}" for i in range(len(params))]
        combos = list(itertools.product(*params)) if params else [()]
        if not isinstance(values, list):
            values, stats, samples = [values], [stats], [samples]
        n = len(combos)
        stats = stats if isinstance(stats, list) else [stats] * n
        samples = samples if isinstance(samples, list) else [samples] * n
        module, _, rest = key.partition(".")
        group, _, metric = rest.rpartition(".")
        for combo, value, st, sm in zip(combos, values, stats, samples, strict=False):
            pdict = {name: parse_param(v) for name, v in zip(names, combo, strict=False)}
            st = st or {}
            rows.append({
                "machine": machine, "commit": result.commit_hash, "date": result.date, "env": result.env_name,
                "benchmark": key, "module": module, "group": group, "metric": metric or rest,
                "type": meta.get("type") or _type_from_name(metric or rest), "unit": meta.get("unit"),
                "params": pdict, "param_key": param_key(pdict),
                "value": float(value) if status_of(value) == "ok" else value, "n": sample_count(value, st, sm),
                "ci_lo": st.get("ci_99_a"), "ci_hi": st.get("ci_99_b"), "q25": st.get("q_25"),
                "q75": st.get("q_75"), "repeat": st.get("repeat"), "number": st.get("number"),
                "samples": sm, "version": result.benchmark_version.get(key), "status": status_of(value),
            })
    return rows


def _type_from_name(name: str) -> str:
    for prefix in ("time", "peakmem", "mem", "track"):
        if name.startswith(prefix + "_"):
            return prefix
    return "unknown"


def load_store(results_dir: str | os.PathLike[str]) -> ResultStore:
    """Read every machine's results; a missing or empty directory is a UsageError (exit 2)."""
    from asv import util
    from asv.results import Results, iter_results_paths

    path = Path(results_dir)
    if not path.is_dir():
        raise UsageError(f"--results {path}: no such directory; give asv's results_dir (default .asv/results)")
    benchmarks = load_benchmarks_json(path)
    machines = load_machines(path)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for root, filename, machine in iter_results_paths(str(path)):
        fpath = os.path.join(root, filename)
        try:
            result = Results.load(fpath, machine_name=machine)
        except (util.UserError, json.JSONDecodeError, ValueError) as exc:
            raise UsageError(f"--results {path}: unreadable results file {fpath}: {exc}") from None
        rows.extend(rows_from_result(result, benchmarks, machine))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if not frame.empty:
        frame["date"] = pd.to_numeric(frame["date"])
        frame["n"] = pd.to_numeric(frame["n"])
    return ResultStore(path=path, rows=frame, machines=machines, benchmarks=benchmarks, warnings=warnings)


def latest_per_machine(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of each machine's most recent commit (by asv's commit date)."""
    if rows.empty:
        return rows
    last = rows.groupby("machine")["date"].transform("max")
    return rows[rows["date"] == last]


def commits_in_order(rows: pd.DataFrame, machine: str) -> list[str]:
    """A machine's commits, oldest first."""
    sub = rows[rows["machine"] == machine][["commit", "date"]].drop_duplicates()
    return list(sub.sort_values(["date", "commit"])["commit"])
