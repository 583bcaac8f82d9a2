"""Synthetic asv results files (asv's own format, version 2) with chosen medians, for gate tests.

Why: the change-point and A/A tests need histories of 30 commits or pairs of runs with a planted step;
real asv runs would take minutes. Each time figure gets 10 samples around its median, with asv's stats.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

ENV = "existing-py_synthetic"
TIME = "bench_core.TrainStep.time_train_step"
AUC = "bench_core.Quality.track_auc_gap"
CANARY = "bench_canary.Canary.time_canary"
PARAMS = [["'torch'", "'tf'"], ["'tiny'"]]
BENCHMARKS = {
    TIME: {"name": TIME, "param_names": ["framework", "preset"], "params": PARAMS, "type": "time", "unit": "seconds",
           "version": "v1"},
    AUC: {"name": AUC, "param_names": ["framework", "preset"], "params": PARAMS, "type": "track", "unit": "1-AUC",
          "version": "v1"},
    CANARY: {"name": CANARY, "param_names": [], "params": [], "type": "time", "unit": "seconds", "version": "v1"},
    "version": 2,
}


def commit_hash(i: int) -> str:
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()


def store(root: Path, machine: str = "synth") -> Path:
    """An empty results store with the machine's machine.json and benchmarks.json; returns results/."""
    results = root / "results"
    (results / machine).mkdir(parents=True, exist_ok=True)
    (results / "benchmarks.json").write_text(json.dumps(BENCHMARKS))
    (results / machine / "machine.json").write_text(json.dumps(
        {"machine": machine, "os": "Linux", "arch": "x86_64", "cpu": "synthetic", "num_cpu": "2", "ram": "1",
         "version": 1}))
    return results


def write_result(path: Path, commit: str, date: int, machine: str, torch_ms: float, tf_ms: float,
                 canary_ms: float | None, rng: np.random.Generator, noise: float = 0.01) -> Path:
    """One asv results file: time_train_step (torch, tf), 1-AUC, and optionally the canary."""
    def timed(ms: float) -> tuple[float, dict[str, float], list[float]]:
        s = list(ms / 1e3 * (1 + noise * rng.standard_normal(10)))
        st = {"lo": float(np.min(s)), "hi": float(np.max(s)), "q25": float(np.percentile(s, 25)),
              "q75": float(np.percentile(s, 75))}
        return float(np.median(s)), st, s

    cols = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a", "stats_ci_99_b", "stats_q_25",
            "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"]
    pair = [timed(torch_ms), timed(tf_ms)]
    results = {
        TIME: [[p[0] for p in pair], PARAMS, "v1", 0, 1.0, [p[1]["lo"] for p in pair], [p[1]["hi"] for p in pair],
               [p[1]["q25"] for p in pair], [p[1]["q75"] for p in pair], [1, 1], [10, 10], [p[2] for p in pair]],
        AUC: [[0.25, 0.25], PARAMS, "v1", 0, 1.0],
    }
    if canary_ms is not None:
        m, st, s = timed(canary_ms)
        results[CANARY] = [[m], [], "v1", 0, 1.0, [st["lo"]], [st["hi"]], [st["q25"]], [st["q75"]], [1], [10], [s]]
    doc = {"commit_hash": commit, "env_name": ENV, "date": date, "params": {"machine": machine, "python": "3.11"},
           "python": "3.11", "requirements": {}, "env_vars": {}, "result_columns": cols, "results": results,
           "durations": {}, "version": 2}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def write_history(root: Path, torch_ms: list[float], tf_ms: list[float], machine: str = "synth",
                  seed: int = 7) -> list[str]:
    """A store with one commit per value, oldest first; returns the commits."""
    results = store(root, machine)
    rng = np.random.default_rng(seed)
    commits = []
    for i, (t, f) in enumerate(zip(torch_ms, tf_ms, strict=True)):
        commit = commit_hash(i)
        commits.append(commit)
        write_result(results / machine / f"{commit[:8]}-{ENV}.json", commit, 1_700_000_000_000 + i * 86_400_000,
                     machine, t, f, None, rng)
    return commits
