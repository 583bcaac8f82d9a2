"""Start a group of worker processes, bound them by a hard timeout, and leave no orphans behind.

Used for every distributed scenario: one ``torchrun`` command (PyTorch), or N TensorFlow workers plus
parameter servers. Each process writes its stdout/stderr to files in the run directory; workers also
write ``rank{R}.phase`` (last phase reached) and ``rank{R}.error`` (one-line exception) so that a
failure or a hang is reported naming the rank and its last stderr lines.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from recsys_impls.parallel import procs

# Fault injection for the failure-path tests: "raise:R" or "hang:R" makes rank R fail or hang.
FAULT_ENV = "RECSYS_PARALLEL_FAULT"


class WorkerFailed(RuntimeError):
    """A distributed run failed or timed out. ``str()`` is one line naming the rank; ``details`` has the logs."""

    def __init__(self, message: str, rank: str, details: str = "") -> None:
        super().__init__(message)
        self.rank = rank
        self.details = details


@dataclass
class Proc:
    """One process to launch. Servers (TF parameter servers) never exit; they are ended when the rest finish."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    server: bool = False


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports, found by binding port 0 (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` non-empty lines of a text file ('' if missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    keep = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(keep[-lines:])


def _rank_notes(run_dir: Path) -> dict[str, tuple[str, str, str]]:
    """{rank: (phase, error, stderr tail)} from what the workers wrote."""
    notes: dict[str, tuple[str, str, str]] = {}
    for phase_file in sorted(run_dir.glob("rank*.phase")):
        rank = phase_file.stem[4:]
        phase = phase_file.read_text().strip()
        err_file = run_dir / f"rank{rank}.error"
        err = err_file.read_text().strip() if err_file.exists() else ""
        stderr = run_dir / f"rank{rank}.stderr"
        if not stderr.exists():  # a worker that did not redirect its own stdio
            stderr = run_dir / f"rank{rank}.launcher-stderr"
        notes[rank] = (phase, err, tail(stderr))
    return notes


def run_group(procs_: list[Proc], run_dir: Path, timeout_s: float, poll_s: float = 0.1) -> None:
    """Run the processes to completion; raise WorkerFailed on the first failure or on timeout.

    Whatever happens, every process started here and all their descendants are ended before returning.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = f"RECSYS_PARALLEL_RUN={uuid.uuid4().hex}"
    started: list[tuple[Proc, subprocess.Popen]] = []
    tree: dict[int, int] = {}
    files = []
    try:
        for p in procs_:
            safe = p.name.replace(" ", "")
            out = open(run_dir / f"{safe}.launcher-stdout", "wb")  # noqa: SIM115
            err = open(run_dir / f"{safe}.launcher-stderr", "wb")  # noqa: SIM115
            files += [out, err]
            env = {**os.environ, **p.env, marker.split("=")[0]: marker.split("=")[1]}
            popen = subprocess.Popen(p.argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
            started.append((p, popen))
            tree[popen.pid] = procs._stat(popen.pid)[1] if procs._stat(popen.pid) else 0
        deadline = time.monotonic() + timeout_s
        while True:
            for _, popen in started:
                tree.update(procs.descendants(popen.pid))
            workers = [(p, q) for p, q in started if not p.server]
            failed = [(p, q) for p, q in workers if q.poll() not in (None, 0)]
            if failed:
                p, q = failed[0]
                raise _failure(run_dir, f"{p.name} exited with code {q.returncode}", p.name)
            if all(q.poll() == 0 for _, q in workers):
                servers_dead = [(p, q) for p, q in started if p.server and q.poll() is not None]
                if servers_dead:
                    p, q = servers_dead[0]
                    raise _failure(run_dir, f"{p.name} exited early with code {q.returncode}", p.name)
                return
            dead_servers = [(p, q) for p, q in started if p.server and q.poll() is not None]
            if dead_servers:
                p, q = dead_servers[0]
                raise _failure(run_dir, f"{p.name} exited early with code {q.returncode}", p.name)
            if time.monotonic() > deadline:
                raise _failure(run_dir, f"timed out after {timeout_s:.0f}s", "")
            time.sleep(poll_s)
    finally:
        _record_server_peaks(started, run_dir)
        for _, popen in started:
            tree.update(procs.descendants(popen.pid))
        tree.update(procs.marked(marker))  # orphans re-parented to init carry our marker in their environment
        procs.terminate(tree)
        for _, popen in started:
            try:
                popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=5)
        for f in files:
            f.close()


SERVER_PEAK_SUFFIX = ".peak_rss"


def _record_server_peaks(started: list[tuple[Proc, subprocess.Popen]], run_dir: Path) -> None:
    """Servers never exit, so they cannot report their own memory: read each one's peak RSS before it is
    ended, into ``{name}.peak_rss`` (bytes)."""
    for p, popen in started:
        if p.server and popen.poll() is None:
            peak = procs.peak_rss_bytes(popen.pid)
            if peak is not None:
                (run_dir / f"{p.name.replace(' ', '')}{SERVER_PEAK_SUFFIX}").write_text(str(peak))


def server_peaks(run_dir: Path) -> dict[str, int]:
    """{server name without spaces: peak RSS bytes} recorded by the last run_group in ``run_dir``."""
    return {f.name[: -len(SERVER_PEAK_SUFFIX)]: int(f.read_text()) for f in run_dir.glob(f"*{SERVER_PEAK_SUFFIX}")}


def _failure(run_dir: Path, what: str, proc_name: str) -> WorkerFailed:
    """Build one clear error: which rank failed (from the workers' own notes), and its last stderr lines."""
    notes = _rank_notes(run_dir)
    # The first rank to fail is the cause; the others then fail in collectives ("connection reset").
    errored = [r for r, (_, err, _) in notes.items() if err]
    errored.sort(key=lambda r: (run_dir / f"rank{r}.error").stat().st_mtime_ns)
    culprit = errored[0] if errored else None
    if culprit is None and "timed out" in what:
        # A hang: name the ranks that never reached the end, with the phase each was stuck in.
        stuck = [f"rank {r} in '{ph}'" for r, (ph, _, _) in notes.items() if ph != "done"]
        culprit_desc = ", ".join(stuck) or "no rank reported progress"
        rank = ",".join(r for r, (ph, _, _) in notes.items() if ph != "done") or "?"
        details = "\n".join(f"--- rank {r} (phase {ph}) stderr:\n{t}" for r, (ph, _, t) in notes.items())
        if not notes:
            details = _launcher_tails(run_dir)
        return WorkerFailed(f"distributed run {what}; unfinished: {culprit_desc}", rank, details)
    if culprit is None:
        details = _launcher_tails(run_dir)
        crashed = _torchrun_root_cause(run_dir)
        if crashed is not None:
            rank, code = crashed
            stderr_tail = tail(run_dir / f"rank{rank}.stderr")
            last = stderr_tail.splitlines()[-1] if stderr_tail else "no stderr"
            return WorkerFailed(f"distributed run failed: rank {rank} died with exit code {code} (signal if < 0): "
                                f"{last}", rank, f"--- rank {rank} stderr:\n{stderr_tail}\n{details}")
        lines = [ln for ln in details.strip().splitlines() if ln.strip("=- ")]
        last = lines[-1] if lines else "no stderr"
        return WorkerFailed(f"distributed run failed: {what or proc_name}: {last}", proc_name or "?", details)
    phase, err, stderr_tail = notes[culprit]
    return WorkerFailed(
        f"distributed run failed: rank {culprit} raised in phase '{phase}': {err}",
        culprit,
        f"--- rank {culprit} stderr (last lines):\n{stderr_tail}",
    )


def _torchrun_root_cause(run_dir: Path) -> tuple[str, str] | None:
    """(rank, exit code) from torchrun's failure summary, for workers that died without a Python error."""
    import re

    try:
        text = (run_dir / "torchrun.launcher-stderr").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
    return (m.group(1), m.group(2)) if m else None


def _launcher_tails(run_dir: Path) -> str:
    return "\n".join(f"--- {f.name}:\n{tail(f)}" for f in sorted(run_dir.glob("*.launcher-stderr")) if tail(f))


def torchrun_argv(nproc: int, module: str, args: list[str], nnodes: int = 1, node_rank: int = 0,
                  rdzv_endpoint: str = "", master_port: int | None = None) -> list[str]:
    """The torchrun command line: standalone on one node, or c10d rendezvous across ``nnodes`` nodes."""
    argv = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1 and not rdzv_endpoint:
        port = master_port or free_ports(1)[0]
        # --standalone picks its own port; we pass an explicit free one so parallel runs never collide.
        argv += ["--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                 f"--rdzv-id=recsys-{port}"]
    else:
        argv += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={rdzv_endpoint}", "--rdzv-id=recsys-bench"]
    argv += [f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", module, *args]
    return argv
