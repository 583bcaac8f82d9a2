"""What every distributed worker shares (framework-neutral): reading the job, reporting phase, result
and error files, stdio redirection, and the fault injection the failure-path tests use."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsys_impls.config import Scenario
from recsys_impls.parallel.launch import FAULT_ENV

JOB_FILE = "job.json"


def write_job(run_dir: Path, scenario: Scenario, extra: dict[str, Any]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOB_FILE
    path.write_text(json.dumps({"scenario": scenario.to_dict(), **extra}))
    return path


class WorkerContext:
    """One rank's view of the run directory."""

    def __init__(self, run_dir: str | Path, rank: int, world_size: int) -> None:
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.world_size = world_size
        job = json.loads((self.run_dir / JOB_FILE).read_text())
        self.job = job
        self.scenario = Scenario.from_dict(job["scenario"])
        from recsys_impls.measure.host import PhaseMemory

        self.memory = PhaseMemory()

    def phase(self, name: str) -> None:
        """Record the phase this rank has reached (the launcher quotes it when the run hangs)."""
        (self.run_dir / f"rank{self.rank}.phase").write_text(name)
        self.memory.enter(name)
        fault = os.environ.get(FAULT_ENV, "")
        if fault and name == os.environ.get(FAULT_ENV + "_PHASE", "train"):
            kind, _, rank = fault.partition(":")
            if rank == str(self.rank):
                if kind == "raise":
                    raise RuntimeError(f"injected failure on rank {self.rank} ({FAULT_ENV}={fault})")
                if kind == "hang":
                    while True:
                        time.sleep(1)
                if kind == "kill":  # a crash with no Python error: what the OOM killer or a segfault leaves
                    os.kill(os.getpid(), signal.SIGKILL)

    def write_result(self, result: dict[str, Any]) -> None:
        """This rank's result (a ``record.rank_result``) with its memory by phase, written atomically for
        the launcher."""
        from recsys_impls.record import Record

        result.update(self.memory.section())
        Record(result).save(self.run_dir / f"rank{self.rank}.json")


def redirect_stdio(run_dir: Path, rank: int | str) -> None:
    """Point this process's stdout/stderr (file descriptors too, for C++ logs) at per-rank files."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(run_dir / f"rank{rank}.{name}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush() if fd == 1 else sys.stderr.flush()
        os.dup2(f, fd)
        os.close(f)


@contextmanager
def guarded(ctx_run_dir: Path, rank: int | str) -> Iterator[None]:
    """Turn any exception into ``rank{R}.error`` (one line) plus the traceback on stderr, then exit 1."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every failure must be reported by rank
        if isinstance(exc, SystemExit) and not exc.code:
            raise
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        (Path(ctx_run_dir) / f"rank{rank}.error").write_text(line)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


def read_results(run_dir: Path, world_size: int) -> list[dict[str, Any]]:
    return [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(world_size)]
