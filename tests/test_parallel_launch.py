"""Launcher failure paths: a failing or hanging worker gives one error naming the rank, the timeout is
honoured, and no process started by the run survives it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from recsys_impls.parallel import launch, procs


def _survivors(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (our run directory), other than this process."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and procs.alive(int(entry.name)):
                out.append(int(entry.name))
    return out


# A worker that records its phase, then starts a grandchild in its own session (as torchrun does) and
# either fails or hangs.
_WORKER = r"""
import os, subprocess, sys, time
run_dir, rank, what = sys.argv[1], sys.argv[2], sys.argv[3]
open(os.path.join(run_dir, f"rank{rank}.phase"), "w").write("train")
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", run_dir], start_new_session=True)
print(f"rank {rank} working", file=sys.stderr, flush=True)
if what == "raise":
    open(os.path.join(run_dir, f"rank{rank}.error"), "w").write("RuntimeError: boom")
    sys.exit(1)
if what == "hang":
    time.sleep(600)
open(os.path.join(run_dir, f"rank{rank}.phase"), "w").write("done")
"""


def _group(tmp_path: Path, behaviours: list[str]) -> list[launch.Proc]:
    return [launch.Proc(f"rank {r}", [sys.executable, "-c", _WORKER, str(tmp_path), str(r), b])
            for r, b in enumerate(behaviours)]


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = launch.free_ports(4)
    assert len(set(ports)) == 4 and all(1024 <= p < 65536 for p in ports)


def test_failing_rank_is_named_and_nothing_survives(tmp_path: Path) -> None:
    with pytest.raises(launch.WorkerFailed) as err:
        launch.run_group(_group(tmp_path, ["hang", "raise"]), tmp_path, timeout_s=60)
    assert err.value.rank == "1"
    assert "rank 1" in str(err.value) and "boom" in str(err.value) and "\n" not in str(err.value)
    assert "rank 1 working" in err.value.details
    assert _survivors(str(tmp_path)) == []


def test_timeout_is_honoured_and_names_the_stuck_ranks(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(launch.WorkerFailed) as err:
        launch.run_group(_group(tmp_path, ["ok", "hang"]), tmp_path, timeout_s=3)
    elapsed = time.monotonic() - start
    assert "timed out after 3s" in str(err.value) and "rank 1 in 'train'" in str(err.value)
    assert err.value.rank == "1"
    assert elapsed < 30  # bounded: timeout plus the termination grace, not the workers' 600 s
    assert _survivors(str(tmp_path)) == []


def test_success_leaves_no_grandchildren(tmp_path: Path) -> None:
    launch.run_group(_group(tmp_path, ["ok", "ok"]), tmp_path, timeout_s=60)
    assert _survivors(str(tmp_path)) == []


def test_torchrun_argv_multi_node() -> None:
    argv = launch.torchrun_argv(4, "m", ["x"], nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    assert "--nnodes=2" in argv and "--node-rank=1" in argv and "--rdzv-endpoint=10.0.0.1:29400" in argv
    single = launch.torchrun_argv(2, "m", [])
    assert any(a.startswith("--rdzv-endpoint=127.0.0.1:") for a in single)
