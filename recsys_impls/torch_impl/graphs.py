"""CUDA-graph replay of the inference step.

A CUDA graph replays fixed kernels on fixed memory, so every input lives in a static buffer: dense
features [B, num_dense], ids [capacity] and bag offsets [F * B + 1]. The number of ids varies between
batches (multi-hot), so ids are padded with row 0 up to the capacity; with ``include_last_offset``
bags the padding lies past the last offset and is never pooled. One graph per batch size; a batch with
more ids than the capacity triggers a re-capture with a larger one (and is counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.torch_impl.embeddings import SparseInput

if TYPE_CHECKING:
    from recsys_impls.torch_impl.model import StagedBatch, TorchDLRM


@dataclass
class StaticInputs:
    """Fixed-address buffers one captured graph reads from."""

    dense: torch.Tensor
    ids: torch.Tensor
    offsets: torch.Tensor
    batch_size: int

    @classmethod
    def like(cls, staged: StagedBatch, capacity: int) -> StaticInputs:
        sparse = _sparse(staged)
        ids = torch.zeros(capacity, dtype=sparse.ids.dtype, device=sparse.ids.device)
        return cls(staged.dense.clone(), ids, sparse.offsets.clone(), staged.batch_size)

    def fill(self, staged: StagedBatch) -> None:
        """Copy a batch into the buffers; ids beyond the batch's own are zeroed (pooled by no bag)."""
        sparse = _sparse(staged)
        n = sparse.ids.numel()
        self.dense.copy_(staged.dense, non_blocking=True)
        self.offsets.copy_(sparse.offsets, non_blocking=True)
        self.ids[:n].copy_(sparse.ids, non_blocking=True)
        self.ids[n:].zero_()

    def as_sparse(self) -> SparseInput:
        return SparseInput(self.ids, self.offsets, self.batch_size)

    @property
    def capacity(self) -> int:
        return self.ids.numel()


def _sparse(staged: StagedBatch) -> SparseInput:
    if not isinstance(staged.sparse, SparseInput):
        raise ScenarioUnsupported(
            f"compile cuda-graphs: the embedding stage {type(staged.sparse).__name__} has no static-buffer layout"
        )
    return staged.sparse


@dataclass
class _Captured:
    inputs: StaticInputs
    graph: torch.cuda.CUDAGraph
    output: torch.Tensor


@dataclass
class GraphedInference:
    """Callable that replays the captured inference graph for a staged batch."""

    model: TorchDLRM
    graphs: dict[int, _Captured] = field(default_factory=dict)
    captures: int = 0

    def __call__(self, staged: StagedBatch) -> torch.Tensor:
        nnz = _sparse(staged).ids.numel()
        entry = self.graphs.get(staged.batch_size)
        if entry is None or nnz > entry.inputs.capacity:
            entry = self._capture(staged, capacity=max(nnz, 1) * 2 if entry else max(nnz, 1))
            self.graphs[staged.batch_size] = entry
        entry.inputs.fill(staged)
        entry.graph.replay()
        return entry.output.clone()

    def _run(self, inputs: StaticInputs) -> torch.Tensor:
        m = self.model
        with m.settings.autocast(cache=False):
            pooled = m.net.embeddings(inputs.as_sparse())
            return torch.sigmoid(m._dense_fn(inputs.dense, pooled).float())

    def _capture(self, staged: StagedBatch, capacity: int) -> _Captured:
        inputs = StaticInputs.like(staged, capacity)
        inputs.fill(staged)
        stream = torch.cuda.Stream(self.model.device)
        stream.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):  # warm up allocator and kernels outside the capture
                self._run(inputs)
        torch.cuda.current_stream(self.model.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            output = self._run(inputs)
        self.captures += 1
        return _Captured(inputs, graph, output)

    def describe(self) -> dict[str, Any]:
        return {"cuda_graph_captures": self.captures, "cuda_graph_batch_sizes": sorted(self.graphs)}
