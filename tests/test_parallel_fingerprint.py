"""Parameter fingerprints: a table hashed block by block from its shards has the digest of the whole table,
and the sharded TorchRec model's streamed fingerprint equals that of its gathered parameters, without any
rank gathering them (two processes on loopback, tiny tables)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from recsys_impls.parallel.shards import (
    assemble_block,
    block_pieces,
    combine_digests,
    fingerprint,
    param_digest,
    row_blocks,
    update_digest,
)

TABLE = np.random.default_rng(0).normal(size=(37, 6)).astype(np.float32)
LAYOUTS = {  # (row offset, column offset, rows, columns) of each shard
    "whole": [(0, 0, 37, 6)],
    "row-wise": [(0, 0, 19, 6), (19, 0, 18, 6)],
    "column-wise": [(0, 0, 37, 3), (0, 3, 37, 3)],
    "grid": [(0, 0, 10, 2), (0, 2, 10, 4), (10, 0, 27, 6)],
}


def _streamed(table: np.ndarray, layout: list[tuple[int, int, int, int]], block_bytes: int) -> str:
    shards = [(r0, c0, table[r0:r0 + rows, c0:c0 + cols]) for r0, c0, rows, cols in layout]
    h = hashlib.sha256()
    for a, b in row_blocks(*table.shape, block_bytes):
        update_digest(h, assemble_block(block_pieces(shards, a, b), a, b, table.shape[1]))
    return h.hexdigest()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("block_bytes", [1, 4 * 6 * 5, 1 << 20])
def test_streamed_table_digest_is_the_whole_tables(layout: str, block_bytes: int) -> None:
    assert _streamed(TABLE, LAYOUTS[layout], block_bytes) == param_digest(TABLE).hexdigest()


def test_fingerprint_is_of_names_and_exact_bytes() -> None:
    params = {"emb.0": TABLE, "top.0.bias": np.arange(3, dtype=np.float32)}
    ref = fingerprint(params)
    assert ref == combine_digests({k: param_digest(v).hexdigest() for k, v in params.items()})
    nudged = TABLE.copy()
    nudged[36, 5] = np.nextafter(nudged[36, 5], np.float32(np.inf))
    assert fingerprint({**params, "emb.0": nudged}) != ref
    assert fingerprint({"emb.1": TABLE, "top.0.bias": params["top.0.bias"]}) != ref


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: each sharding's streamed fingerprint against its gathered parameters; a changed table
    row changes every rank's value, a changed dense weight on one rank only that rank's."""
    import torch
    import torch.distributed as dist

    from recsys_impls.config import build_scenario
    from recsys_impls.parallel.shards import prepare_data
    from recsys_impls.torch_impl.distributed_sharded import ShardedDLRM

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    lines = []
    for sharding in ("table-wise", "row-wise", "column-wise"):
        sc = build_scenario({"model": {"table_sizes": [300, 50, 800, 120], "embedding_dim": 8,
                                       "bottom_mlp": [16, 8], "top_mlp": [16, 1]},
                             "train": {"batch_size": 64, "steps": 1, "eval_samples": 64},
                             "scenario": {"framework": "torch", "parallel": f"sharded:{world}:{sharding}"}})
        sc, data = prepare_data(sc)
        probe = data.train.split(64)[0]
        impl = ShardedDLRM(sc, sharding, rank, world)
        full = impl.get_params()
        dumped = impl.gather_params(0)
        first = impl.fingerprint(block_bytes=1000)  # many blocks per split table
        assert first == fingerprint(full), sharding
        assert (dumped is None) == (rank != 0), sharding
        if dumped is not None:
            assert fingerprint(dumped) == first, sharding
        if sharding == "table-wise":  # the timing probe updates the tables it times, then puts them back
            assert impl.probe_table_seconds([probe], repeats=2), "no table probed"
            assert impl.fingerprint() == first
        t = impl._local_shards()[-1][2] if rank == 1 else None
        with torch.no_grad():
            if t is not None:
                t[-1, -1] += 1.0
            changed = impl.fingerprint()
            if rank == 1:
                next(iter(impl._dense().values())).view(-1)[0] += 1.0
            dense = impl.fingerprint()
        lines.append(f"{sharding} {first} {changed} {dense}")
    Path(out, f"rank{rank}.txt").write_text("\n".join(lines))
    dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_fingerprint_streams_what_the_gathered_params_hash(tmp_path: Path) -> None:
    pytest.importorskip("torchrec")
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = ([line.split() for line in (tmp_path / f"rank{r}.txt").read_text().splitlines()] for r in (0, 1))
    for (name, first, changed, dense), (_, first1, changed1, dense1) in zip(r0, r1, strict=True):
        assert first == first1 and changed == changed1, name  # the same tables and replicas: the same value
        assert changed != first, name  # one table element on one rank changed every rank's value
        assert dense != dense1 and dense == changed, name  # a dense replica that drifted shows on its rank
