"""The Batch: the only thing that crosses from shared code into a framework.

Categorical ids are stored feature-major, like TorchRec's KeyedJaggedTensor: all ids of feature 0
(sample 0, then sample 1, ...), then all ids of feature 1, and so on. ``lengths[f, b]`` is how many
ids sample ``b`` has for feature ``f``. This layout lets each framework pool a whole feature (or all
features at once) with one segment-sum, with no per-sample Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    dense: np.ndarray  # float32 [B, num_dense]
    ids: np.ndarray  # int64 [nnz], feature-major
    lengths: np.ndarray  # int32 [F, B]
    labels: np.ndarray  # float32 [B], 0 or 1

    def __post_init__(self) -> None:
        b = self.dense.shape[0]
        if self.lengths.ndim != 2 or self.lengths.shape[1] != b:
            raise ValueError(f"lengths must be [F, {b}], got {self.lengths.shape}")
        if self.labels.shape != (b,):
            raise ValueError(f"labels must be [{b}], got {self.labels.shape}")
        if int(self.lengths.sum()) != self.ids.shape[0]:
            raise ValueError(f"lengths sum to {int(self.lengths.sum())} but there are {self.ids.shape[0]} ids")

    @property
    def batch_size(self) -> int:
        return int(self.dense.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.dense.nbytes + self.ids.nbytes + self.lengths.nbytes + self.labels.nbytes)

    def feature_offsets(self) -> np.ndarray:
        """Start of each feature's ids in ``ids``: int64 [F + 1]."""
        return np.concatenate([[0], np.cumsum(self.lengths.sum(axis=1, dtype=np.int64))])

    def bag_offsets(self) -> np.ndarray:
        """Start of every (feature, sample) bag in ``ids``, feature-major: int64 [F * B + 1]."""
        return np.concatenate([[0], np.cumsum(self.lengths.reshape(-1), dtype=np.int64)])

    def feature_ids(self, f: int) -> np.ndarray:
        off = self.feature_offsets()
        return self.ids[off[f] : off[f + 1]]

    def slice(self, start: int, stop: int, bag: np.ndarray | None = None) -> Batch:
        """Samples [start, stop) as a new Batch (ids copied, so the result is contiguous).

        ``bag`` is ``bag_offsets()`` when the caller already has it: slicing many batches out of one
        dataset then costs the size of each slice, not a pass over the whole dataset per slice.
        """
        stop = min(stop, self.batch_size)
        f, b = self.lengths.shape
        bag = self.bag_offsets() if bag is None else bag
        rows = np.arange(f) * b
        ids = np.concatenate([self.ids[bag[r + start] : bag[r + stop]] for r in rows]) if f else self.ids[:0]
        return Batch(
            dense=np.ascontiguousarray(self.dense[start:stop]),
            ids=ids,
            lengths=np.ascontiguousarray(self.lengths[:, start:stop]),
            labels=np.ascontiguousarray(self.labels[start:stop]),
        )

    def split(self, batch_size: int) -> list[Batch]:
        """Consecutive batches of ``batch_size`` samples; the last, partial one is dropped."""
        bag = self.bag_offsets()
        return [self.slice(i, i + batch_size, bag) for i in range(0, self.batch_size - batch_size + 1, batch_size)]

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        """Join batches sample-wise, keeping the feature-major id order."""
        f = batches[0].num_features
        per_feature = [[b.feature_ids(i) for b in batches] for i in range(f)]
        return Batch(
            dense=np.concatenate([b.dense for b in batches]),
            ids=np.concatenate([x for parts in per_feature for x in parts]),
            lengths=np.concatenate([b.lengths for b in batches], axis=1),
            labels=np.concatenate([b.labels for b in batches]),
        )
