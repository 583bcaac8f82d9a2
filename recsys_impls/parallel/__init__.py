"""Parallel scenarios: threads, data parallel and sharded embeddings on real distributed engines.

Framework-neutral and cheap to import; the engines are imported by the worker processes.
"""

from __future__ import annotations

from typing import Any

from recsys_impls.parallel.launch import WorkerFailed
from recsys_impls.parallel.spec import ParallelPlan, check_supported, describe_modes, parse_parallel

__all__ = ["ParallelPlan", "WorkerFailed", "check_supported", "describe_modes", "parse_parallel", "run_parallel"]


def run_parallel(scenario: Any, progress: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Record for a scenario whose ``parallel`` is not 'none' (see recsys_impls.parallel.run)."""
    from recsys_impls.parallel.run import run_parallel as _run

    return _run(scenario, progress=progress, **kwargs)
