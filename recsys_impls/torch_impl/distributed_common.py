"""Pieces both PyTorch distributed modes share: process-group set-up, per-rank data slices, parameter
fingerprints and gathered evaluation (the timed window is ``measure.loop.timed_loop`` with a barrier)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from recsys_impls.parallel.shards import eval_slice, fingerprint, local_batches, prepare_data

__all__ = ["eval_slice", "fingerprint", "local_batches", "prepare_data"]


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


def gather_predictions(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """All ranks' eval predictions, concatenated in rank order on rank 0 (None elsewhere)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (probs, labels))
    if dist.get_rank() != 0:
        return None
    return np.concatenate([p for p, _ in parts]), np.concatenate([lb for _, lb in parts])


def quality(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from recsys_impls import metrics

    q = metrics.all_metrics(labels, probs)
    q["eval_samples"] = int(labels.shape[0])
    return q
