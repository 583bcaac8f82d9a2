"""The one input layout every export shares, and conversions between it and the suite's Batch.

Served models take three tensors (the same names, dtypes and axes in every format and framework):

* ``dense``   float32 [B, num_dense]: the dense features, as in training.
* ``ids``     int64   [B, T, L]: for sample b and table t, its ids in ``ids[b, t, :lengths[b, t]]``
  (row numbers within table t, not shifted); the rest of each row is padding (any value in range,
  zero here) and is never read. L is the longest bag in the request (dynamic, at least 1).
* ``lengths`` int64   [B, T]: how many ids each (sample, table) bag holds, 0 to L.

Output: ``probability`` float32 [B], the click probability (sigmoid of the logit).

Why padded ids and not flat ids with offsets: every runtime here (ONNX Runtime, SavedModel, an
ExportedProgram) gets fixed-rank tensors with only B and L dynamic, a request is cut into a sub-batch
by slicing axis 0 (what the dynamic batcher does), and pooling is a gather, a mask and a sum, which
ONNX expresses with standard operators (there is no EmbeddingBag operator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_impls.data.batch import Batch

INPUT_NAMES = ("dense", "ids", "lengths")
OUTPUT_NAME = "probability"


def input_spec(num_dense: int, num_tables: int) -> list[dict[str, object]]:
    """The manifest's description of the inputs (name, dtype, shape with symbolic axes, meaning)."""
    return [
        {"name": "dense", "dtype": "float32", "shape": ["B", num_dense], "meaning": "dense features"},
        {"name": "ids", "dtype": "int64", "shape": ["B", num_tables, "L"],
         "meaning": "per-table row ids of each bag, padded to L (the longest bag); padding is ignored"},
        {"name": "lengths", "dtype": "int64", "shape": ["B", num_tables],
         "meaning": "number of valid ids in each (sample, table) bag, 0..L"},
    ]


def output_spec() -> dict[str, object]:
    return {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["B"], "meaning": "click probability"}


@dataclass(frozen=True)
class ServingInputs:
    """One request batch in the shared layout (numpy, host memory)."""

    dense: np.ndarray  # float32 [B, num_dense]
    ids: np.ndarray  # int64 [B, T, L]
    lengths: np.ndarray  # int64 [B, T]

    @property
    def batch_size(self) -> int:
        return int(self.dense.shape[0])

    def feeds(self) -> dict[str, np.ndarray]:
        return {"dense": self.dense, "ids": self.ids, "lengths": self.lengths}

    def take(self, index: np.ndarray | list[int]) -> ServingInputs:
        """The samples at ``index`` (a gather along axis 0; contiguous copies)."""
        idx = np.asarray(index, dtype=np.int64)
        return ServingInputs(self.dense[idx], self.ids[idx], self.lengths[idx])


def to_padded(batch: Batch) -> ServingInputs:
    """A Batch (feature-major flat ids) -> the serving layout. Vectorised: one scatter."""
    f, b = batch.lengths.shape
    lengths = batch.lengths.T.astype(np.int64)  # [B, T]
    width = max(1, int(lengths.max(initial=0)))
    ids = np.zeros((b, f, width), dtype=np.int64)
    flat_len = batch.lengths.reshape(-1).astype(np.int64)  # feature-major bags
    starts = np.repeat(np.concatenate([[0], np.cumsum(flat_len)[:-1]]), flat_len)
    pos = np.arange(flat_len.sum(), dtype=np.int64) - starts  # position inside the bag
    bag = np.repeat(np.arange(f * b, dtype=np.int64), flat_len)
    ids[bag % b, bag // b, pos] = batch.ids
    return ServingInputs(np.ascontiguousarray(batch.dense, dtype=np.float32), ids, lengths)


def from_padded(inputs: ServingInputs) -> Batch:
    """The serving layout -> a Batch (labels zero): what the native models' ``predict`` takes."""
    b, f, width = inputs.ids.shape
    lengths = inputs.lengths.T.astype(np.int32)  # [F, B]
    mask = np.arange(width)[None, None, :] < lengths[:, :, None]  # [F, B, L], feature-major order
    ids = inputs.ids.transpose(1, 0, 2)[mask]
    return Batch(dense=np.ascontiguousarray(inputs.dense, dtype=np.float32), ids=ids.astype(np.int64),
                 lengths=np.ascontiguousarray(lengths), labels=np.zeros(b, np.float32))


def concat(parts: list[ServingInputs]) -> ServingInputs:
    """Join requests along the batch axis (padding every ``ids`` to the widest L)."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.ids.shape[2] for p in parts)
    ids = [p.ids if p.ids.shape[2] == width else np.pad(p.ids, ((0, 0), (0, 0), (0, width - p.ids.shape[2])))
           for p in parts]
    return ServingInputs(np.concatenate([p.dense for p in parts]), np.concatenate(ids),
                         np.concatenate([p.lengths for p in parts]))
