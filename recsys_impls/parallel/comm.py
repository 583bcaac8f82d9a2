"""Communication-volume model: bytes moved per training step at larger world sizes.

Inputs are tensor sizes measured in a real step (dense gradient bytes, pooled-embedding bytes, id
bytes, sparse-gradient bytes per sample); the model applies the standard collective costs:

* ring all-reduce of G bytes over W ranks: each rank sends 2 (W-1)/W G;
* all-gather of S bytes per rank: each rank receives (W-1) S;
* all-to-all where each rank holds 1/W of the data for each peer: each rank sends (W-1)/W of its part.

With the global batch held fixed (strong scaling, as the scenarios run), a rank's pooled embeddings and
ids shrink as 1/W while dense gradients stay the same size, so DDP traffic per rank grows toward 2G and
model-parallel all-to-all traffic per rank falls as 1/W while the total stays near the global volume.
"""

from __future__ import annotations

from typing import Any

DEFAULT_WORLDS = (2, 4, 8, 16, 64)


def allreduce_per_rank(nbytes: float, world: int) -> float:
    return 2.0 * (world - 1) / world * nbytes if world > 1 else 0.0


def data_parallel_volume(dense_grad_bytes: float, sparse_grad_bytes_per_sample: float, global_batch: int,
                         world: int, embeddings_replicated: bool = True) -> dict[str, float]:
    """DDP: all-reduce of dense gradients; replicated embedding tables' sparse gradients are all-gathered."""
    dense = allreduce_per_rank(dense_grad_bytes, world)
    local = sparse_grad_bytes_per_sample * global_batch / world
    sparse = (world - 1) * local if embeddings_replicated and world > 1 else 0.0
    return {"dense_allreduce_per_rank": dense, "sparse_allgather_per_rank": sparse,
            "per_rank": dense + sparse, "total": world * (dense + sparse)}


def model_parallel_volume(dense_grad_bytes: float, pooled_bytes_per_sample: float, id_bytes_per_sample: float,
                          global_batch: int, world: int, sharding: str) -> dict[str, float]:
    """Sharded embeddings: ids all-to-all, pooled embeddings all-to-all forward and their gradients backward,
    plus the dense (MLP) all-reduce. Row-wise shards send partial sums for every sample (reduce-scatter),
    so their pooled traffic per rank does not shrink with W."""
    if world <= 1:
        zero = {k: 0.0 for k in ("ids_alltoall_per_rank", "pooled_fwd_per_rank", "pooled_bwd_per_rank",
                                 "dense_allreduce_per_rank", "per_rank", "total")}
        return zero
    frac = (world - 1) / world
    ids = id_bytes_per_sample * global_batch / world * frac
    if sharding == "row-wise":
        pooled = pooled_bytes_per_sample * global_batch * frac  # partial sums for the whole batch, per rank
    else:  # table-wise, column-wise: each sample's pooled vectors come from their owners once
        pooled = pooled_bytes_per_sample * global_batch / world * frac
    dense = allreduce_per_rank(dense_grad_bytes, world)
    per_rank = ids + 2 * pooled + dense
    return {"ids_alltoall_per_rank": ids, "pooled_fwd_per_rank": pooled, "pooled_bwd_per_rank": pooled,
            "dense_allreduce_per_rank": dense, "per_rank": per_rank, "total": world * per_rank}


def parameter_server_volume(measured: dict[str, float], global_batch: int, world: int) -> dict[str, float]:
    """ParameterServerStrategy with W workers and W ps: every id travels to the ps holding its row and the
    row comes back, sparse updates go to the ps, and each of the W worker closures per global step pulls
    the dense weights and pushes their update. Embedding traffic is fixed by the global batch; dense
    traffic grows with W. Per ps/worker figures assume an even spread."""
    ids = measured["id_bytes_per_sample"] * global_batch
    rows = measured["rows_pulled_bytes_per_sample"] * global_batch
    sparse = measured["sparse_update_bytes_per_sample"] * global_batch
    dense = world * measured["dense_pull_push_bytes_per_worker_step"]
    total = ids + rows + sparse + dense
    return {"ids_to_ps": ids, "rows_from_ps": rows, "sparse_updates_to_ps": sparse, "dense_pull_push": dense,
            "per_rank": total / world, "total": total}


def project(measured: dict[str, Any], mode: str, global_batch: int, sharding: str = "",
            worlds: tuple[int, ...] = DEFAULT_WORLDS) -> dict[str, Any]:
    """Per-step volume at each world size from the measured per-step sizes (keys as produced by workers)."""
    rows = {}
    for w in worlds:
        if measured.get("topology") == "parameter-server":
            v = parameter_server_volume(measured, global_batch, w)
        elif mode in ("ddp", "mwms"):
            v = data_parallel_volume(measured["dense_grad_bytes"], measured.get("sparse_grad_bytes_per_sample", 0.0),
                                     global_batch, w, measured.get("embeddings_replicated", True))
        else:
            v = model_parallel_volume(measured["dense_grad_bytes"], measured["pooled_bytes_per_sample"],
                                      measured["id_bytes_per_sample"], global_batch, w, sharding)
        rows[str(w)] = {k: float(x) for k, x in v.items()}
    return {"model": "strong scaling, fixed global batch; ring all-reduce, all-gather, all-to-all costs",
            "global_batch": global_batch, "bytes_per_step": rows}
