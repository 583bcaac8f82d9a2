"""Forward-only pooled embedding lookups (``F.embedding_bag``, sum) timed alone: the memory-bound kernel of
a recommender's inference, measured without the MLPs around it, so its bytes per second can be set against
the machine's measured memory bandwidth (``scalebench.lookup_bandwidth``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from recsys_impls import hugepages
from recsys_impls.data.batch import Batch
from recsys_impls.measure.loop import timed_loop
from recsys_impls.torch_impl.embeddings import FusedEmbeddingBags


@contextmanager
def _cpu_seconds(out: list[float]) -> Iterator[None]:
    """CPU time of this process over the window (all threads): on a shared machine the wall clock also
    counts the time other processes had the cores."""
    start = time.process_time()
    yield
    out.append(time.process_time() - start)


def pooled_lookup_rate(table_sizes: Sequence[int], dim: int, batches: Sequence[Batch], warmup: int = 3,
                       steps: int | None = None) -> dict[str, Any]:
    """Time pooled lookups of ``batches`` (rotating) in fp32 tables of ``table_sizes`` x ``dim``.

    Bytes per batch, counted as the kernel moves them: every looked-up row (a row per id, however often
    it repeats), the ids and bag offsets (int64), the pooled output written. ``distinct_row_fraction`` is
    the share of lookups that hit a row not already read in the same batch: Zipf-skewed ids repeat hot rows,
    which then come from cache, so the row bytes are an upper bound on what DRAM delivered.
    ``busy_bytes_per_s`` divides by the CPU time the threads got (not the wall clock): the rate the kernel
    would reach with its cores to itself, for a machine shared with other work.
    """
    bags = FusedEmbeddingBags(table_sizes, dim)
    with torch.no_grad():
        bags.bag.weight.uniform_(-0.01, 0.01)  # touch every page: an untouched table reads the zero page
    staged = [bags.stage(b, torch.device("cpu"), False) for b in batches]

    def step(s: Any) -> torch.Tensor:
        with torch.no_grad():
            return bags(s)

    cpu_s: list[float] = []
    result = timed_loop(step, staged, warmup=warmup, steps=steps if steps is not None else 4 * len(staged),
                        window=[_cpu_seconds(cpu_s)])
    per_batch = []
    for s in staged:
        nnz, n_bags = int(s.ids.numel()), int(s.offsets.numel()) - 1
        row_bytes = nnz * dim * 4
        per_batch.append((nnz, row_bytes, row_bytes + 8 * (nnz + n_bags + 1) + 4 * n_bags * dim,
                          len(np.unique(s.ids.numpy())) / max(nnz, 1)))
    nnz, row_bytes, total, distinct = (float(np.mean([p[i] for p in per_batch])) for i in range(4))
    step_s = result.seconds / max(result.timed_steps, 1)
    threads = torch.get_num_threads()
    busy_step_s = cpu_s[0] / threads / max(result.timed_steps, 1)  # as if every thread had its core throughout
    return {
        "kernel": "torch.nn.functional.embedding_bag (mode=sum, fp32, all tables fused), forward only",
        "threads": threads, "batches": len(staged), "batch_size": batches[0].batch_size,
        "table_bytes": int(sum(table_sizes)) * dim * 4, "row_bytes": dim * 4,
        "lookups_per_batch": nnz, "bytes_per_batch": total, "row_bytes_per_batch": row_bytes,
        "distinct_row_fraction": distinct, "step_ms": result.stats(), "timed_steps": result.timed_steps,
        "bytes_per_s": total / step_s, "row_bytes_per_s": row_bytes / step_s, "lookups_per_s": nnz / step_s,
        "cpu_seconds": cpu_s[0], "busy_bytes_per_s": total / busy_step_s if busy_step_s > 0 else None,
        "ns_per_lookup_per_thread": 1e9 * cpu_s[0] / max(result.timed_steps * nnz, 1),
        "huge_pages": hugepages.record_section(),
    }
