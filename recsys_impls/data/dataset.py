"""A loaded dataset: train and eval Batches plus the facts the record reports about the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recsys_impls.data.batch import Batch


@dataclass
class Dataset:
    name: str
    train: Batch
    eval: Batch
    num_dense: int
    table_sizes: tuple[int, ...]
    # Facts for the record: for synthetic data the hidden model's own AUC on the eval split
    # ("reference_auc"), for files the number of skipped bad lines, etc.
    info: dict[str, Any] = field(default_factory=dict)
    # A source of training batches drawn on demand (data.stream.BatchSource); None: train is held in full.
    stream: Any = None
