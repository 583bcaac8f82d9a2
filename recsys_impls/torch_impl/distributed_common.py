"""Pieces both PyTorch distributed modes share: process-group set-up, per-rank data slices, timing
with barriers, parameter fingerprints and gathered evaluation."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch


def init_process_group(device: str, timeout_s: float) -> tuple[int, int]:
    """gloo on CPU, NCCL on CUDA; rank and world from torchrun's environment."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def local_device(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def prepare_data(scenario: Scenario) -> tuple[Scenario, Any]:
    """Every rank loads the same deterministic data (the scenario seed) through the runner's path."""
    import importlib.util

    if importlib.util.find_spec("recsys_impls.data.loader") is None:  # until the loader lands
        from recsys_impls.data.synthetic import load_synthetic

        m, t = scenario.model, scenario.train
        data = load_synthetic(m.num_dense, m.table_sizes, m.ids_per_feature, scenario.data.zipf_exponent,
                              t.seed, t.steps * t.batch_size, t.eval_samples)
        return scenario, data
    from recsys_impls.runner import prepare

    return prepare(replace(scenario, parallel="none"))


def local_batches(train: Batch, global_batch: int, rank: int, world: int) -> list[Batch]:
    """Split the train split into global batches and keep this rank's contiguous 1/world of each."""
    if global_batch % world:
        from recsys_impls.errors import UsageError

        raise UsageError(f"--batch-size {global_batch}: must be divisible by the world size {world}")
    local = global_batch // world
    return [g.slice(rank * local, (rank + 1) * local) for g in train.split(global_batch)]


def timed_loop(step: Callable[[Any], None], staged: list[Any], warmup: int, sync: Callable[[], None]) -> dict[str, Any]:
    """Warm-up steps, then the timed steps between two barriers (so every rank times the same window)."""
    warmup = min(warmup, max(len(staged) - 1, 0))
    for s in staged[:warmup]:
        step(s)
    sync()
    dist.barrier()
    step_times = []
    start = time.perf_counter()
    for s in staged[warmup:]:
        t0 = time.perf_counter()
        step(s)
        step_times.append(time.perf_counter() - t0)
    sync()
    dist.barrier()
    seconds = time.perf_counter() - start
    timed = len(staged) - warmup
    return {"warmup_steps": warmup, "timed_steps": timed, "seconds": seconds,
            "step_ms_mean": 1e3 * seconds / max(timed, 1),
            "step_ms_p50": 1e3 * float(np.median(step_times)) if step_times else None}


def fingerprint(params: dict[str, np.ndarray]) -> str:
    """A hash of every parameter's exact bytes: equal fingerprints mean bit-identical replicas."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name], dtype=np.float32).tobytes())
    return h.hexdigest()


def gather_predictions(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """All ranks' eval predictions, concatenated in rank order on rank 0 (None elsewhere)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (probs, labels))
    if dist.get_rank() != 0:
        return None
    return np.concatenate([p for p, _ in parts]), np.concatenate([lb for _, lb in parts])


def eval_slice(eval_batch: Batch, rank: int, world: int) -> Batch:
    n = eval_batch.batch_size
    per = n // world
    return eval_batch.slice(rank * per, (rank + 1) * per)


def quality(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from recsys_impls import metrics

    q = metrics.all_metrics(labels, probs)
    q["eval_samples"] = int(labels.shape[0])
    return q
