"""Start a group of worker processes, bound them by a hard timeout, and leave no orphans behind.

Used for every distributed scenario: one ``torchrun`` command (PyTorch), or N TensorFlow workers plus
parameter servers. Each process writes its stdout/stderr to files in the run directory; workers also
write ``rank{R}.phase`` (last phase reached) and ``rank{R}.error`` (one-line exception) so that a
failure or a hang is reported in one line naming the rank, its phase and the cause. The run's logs are
copied to a log folder (recsys_impls.logs) before the run directory goes, and the line names it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from recsys_impls.parallel import procs

# Fault injection for the failure-path tests: "raise:R", "hang:R" or "kill:R" makes rank R raise, hang,
# or die from SIGKILL when it reaches the phase in RECSYS_PARALLEL_FAULT_PHASE (default "train").
FAULT_ENV = "RECSYS_PARALLEL_FAULT"

# A rank that raised one of these failed on the user's input (a bad data file, an unsupported setting).
USER_ERRORS = ("UsageError", "DataFormatError", "ScenarioUnsupported")


class WorkerFailed(RuntimeError):
    """A distributed run failed or timed out. ``str()`` is one line naming the rank, its phase and the cause,
    and the log folder; ``details`` has the last stderr lines; ``exit_code`` is 2 for bad input, else 1."""

    def __init__(self, message: str, rank: str, details: str = "", phase: str | None = None, cause: str = "",
                 user_error: bool = False, log_dir: Path | None = None) -> None:
        super().__init__(message)
        self.rank = rank
        self.details = details
        self.phase = phase
        self.cause = cause
        self.user_error = user_error
        self.log_dir = log_dir

    @property
    def exit_code(self) -> int:
        return 2 if self.user_error else 1


@dataclass
class Proc:
    """One process to launch. Servers (TF parameter servers) never exit; they are ended when the rest finish.

    ``rank``: the name this process writes its ``rank{R}.phase`` / ``.error`` notes under, when it is
    one process of the run (not a launcher such as torchrun)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    server: bool = False
    rank: str | None = None


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

    Whatever happens (a failure, a timeout, an exception such as signals.Interrupted arriving in this
    thread), every process started here and all their descendants are ended before returning: each is
    started in its own session, and the tree is collected by parentage, by session and by a marker
    variable in the environment, so that re-parented grandchildren are found too.
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
            # PET_LOG_DIR: torchrun's own log folder (else a /tmp/torchelastic_* it never removes) goes
            # inside the run directory, and so goes with it.
            env = {**os.environ, "PET_LOG_DIR": str(run_dir / "torchelastic"), **p.env,
                   marker.split("=")[0]: marker.split("=")[1]}
            popen = subprocess.Popen(p.argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
            started.append((p, popen))
            st = procs._stat(popen.pid)
            if st is not None:
                tree[popen.pid] = st[1]
        deadline = time.monotonic() + timeout_s
        while True:
            _collect(started, tree)
            workers = [(p, q) for p, q in started if not p.server]
            failed = [(p, q) for p, q in workers if q.poll() not in (None, 0)]
            if failed:
                p, q = failed[0]
                raise _failure(run_dir, proc=p, code=q.returncode)
            dead_servers = [(p, q) for p, q in started if p.server and q.poll() is not None]
            if dead_servers:
                p, q = dead_servers[0]
                raise _failure(run_dir, proc=p, code=q.returncode)
            if all(q.poll() == 0 for _, q in workers):
                return
            if time.monotonic() > deadline:
                raise _failure(run_dir, timeout_s=timeout_s)
            time.sleep(poll_s)
    finally:
        _end_group(started, tree, marker, run_dir)
        for f in files:
            f.close()


def _collect(started: list[tuple[Proc, subprocess.Popen]], tree: dict[int, int]) -> None:
    """Add every live descendant of the started processes to ``tree`` (pid -> start time)."""
    for _, popen in started:
        tree.update(procs.descendants(popen.pid))


def _end_group(started: list[tuple[Proc, subprocess.Popen]], tree: dict[int, int], marker: str,
               run_dir: Path) -> None:
    """End and reap the whole group: recorded tree, current descendants, same sessions, marked orphans."""
    _record_server_peaks(started, run_dir)
    _collect(started, tree)
    tree.update(procs.in_sessions({popen.pid for _, popen in started}))  # sessions we started: sid == pid
    tree.update(procs.marked(marker))  # orphans re-parented to init carry our marker in their environment
    procs.terminate(tree)
    for _, popen in started:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)


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


def exit_description(code: int) -> str:
    """'was killed by SIGKILL' for a negative (signal) exit code, else 'exited with code N'."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# Deaths that are consequences, not causes: torchrun ends the other workers with SIGTERM once one fails.
_SECONDARY_SIGNALS = (-signal.SIGTERM, -signal.SIGINT)


def _failure(run_dir: Path, proc: Proc | None = None, code: int | None = None,
             timeout_s: float | None = None) -> WorkerFailed:
    """One clear error: which rank or server failed, in which phase, and why; the logs are kept."""
    notes = _rank_notes(run_dir)
    found = _diagnose(run_dir, notes, proc, code, timeout_s)
    log_dir = keep_logs(run_dir, found)
    message = found.pop("message")
    if log_dir is not None:
        message += f" (logs: {log_dir})"
    return WorkerFailed(message, log_dir=log_dir, **found)


def _diagnose(run_dir: Path, notes: dict[str, tuple[str, str, str]], proc: Proc | None, code: int | None,
              timeout_s: float | None) -> dict:
    """The culprit, in this order: a process killed by a crash signal (others then fail in collectives,
    "connection reset"); the first rank to write an error; a rank torchrun saw exit; the process itself."""
    def phase_of(rank: str) -> str | None:
        return notes[rank][0] if rank in notes else None

    def where(rank: str) -> str:
        ph = phase_of(rank)
        if ph == "done" and not rank.isdigit():
            return " while serving"  # a TF server reports "done" once it serves
        return f" in phase '{ph}'" if ph else " before reporting a phase"

    if timeout_s is not None:
        stuck = [(r, ph) for r, (ph, _, _) in notes.items() if ph != "done"]
        desc = ", ".join(f"rank {r} in '{ph}'" for r, ph in stuck) or "no rank reported progress"
        details = "\n".join(f"--- rank {r} (phase {ph}) stderr:\n{t}" for r, (ph, _, t) in notes.items())
        return {"message": f"distributed run timed out after {timeout_s:.0f}s; unfinished: {desc}",
                "rank": ",".join(r for r, _ in stuck) or "?", "phase": stuck[0][1] if stuck else None,
                "cause": f"timed out after {timeout_s:.0f}s", "details": details or _launcher_tails(run_dir)}
    exits = _torchrun_failures(run_dir)
    # the process that failed, under the name its notes use (none for a launcher such as torchrun)
    own = None
    if proc is not None:
        own = proc.rank or (proc.name.replace(" ", "") if proc.name.replace(" ", "") in notes else None)
    if own is not None and code is not None:
        exits = {own: code, **exits}
    errored = sorted((r for r, (_, err, _) in notes.items() if err),
                     key=lambda r: (run_dir / f"rank{r}.error").stat().st_mtime_ns)
    crashed = [r for r, c in exits.items() if c < 0 and c not in _SECONDARY_SIGNALS and r not in errored]
    if crashed:
        r = crashed[0]
        cause = exit_description(exits[r])
        return {"message": f"distributed run failed: {_who(r)} {cause}{where(r)}", "rank": r, "phase": phase_of(r),
                "cause": cause, "details": f"--- {_who(r)} stderr (last lines):\n{tail(_stderr_of(run_dir, r))}\n"
                                           f"{_launcher_tails(run_dir)}"}
    if errored:
        r = errored[0]
        phase, err, stderr_tail = notes[r]
        return {"message": f"distributed run failed: {_who(r)} raised in phase '{phase}': {err}", "rank": r,
                "phase": phase, "cause": err, "user_error": err.split(":")[0] in USER_ERRORS,
                "details": f"--- {_who(r)} stderr (last lines):\n{stderr_tail}"}
    if exits:
        r, c = next(iter(exits.items()))
        stderr_tail = tail(_stderr_of(run_dir, r))
        last = stderr_tail.splitlines()[-1] if stderr_tail else "no stderr"
        cause = f"{exit_description(c)}: {last}"
        return {"message": f"distributed run failed: {_who(r)} {exit_description(c)}{where(r)}: {last}", "rank": r,
                "phase": phase_of(r), "cause": cause,
                "details": f"--- {_who(r)} stderr:\n{stderr_tail}\n{_launcher_tails(run_dir)}"}
    details = _launcher_tails(run_dir)
    lines = [ln for ln in details.strip().splitlines() if ln.strip("=- ")]
    last = lines[-1] if lines else "no stderr"
    name = proc.name if proc is not None else "?"
    cause = f"{exit_description(code)}: {last}" if code is not None else last
    return {"message": f"distributed run failed: {name} {cause}", "rank": name, "phase": None, "cause": cause,
            "details": details}


def _who(rank: str) -> str:
    """'rank 1' for a worker rank; 'ps 0' or 'worker 1' for a TF server (its notes are named 'ps0')."""
    if rank.isdigit():
        return f"rank {rank}"
    m = re.fullmatch(r"([a-z]+)(\d+)", rank)
    return f"{m.group(1)} {m.group(2)}" if m else rank


def _stderr_of(run_dir: Path, rank: str) -> Path:
    own = run_dir / f"rank{rank}.stderr"
    return own if own.exists() else run_dir / f"rank{rank}.launcher-stderr"


# What a failed run's log folder keeps: every process's output and notes, and the job; at most this
# much of each file (its end: where the error is).
_KEPT = ("*.stderr", "*.stdout", "*.launcher-stderr", "*.launcher-stdout", "*.phase", "*.error", "job.json")
KEEP_BYTES = 2 * 2**20


def keep_logs(run_dir: Path, found: dict) -> Path | None:
    """Copy the run's logs to a new log folder with ``failure.txt`` (the message and details); its path."""
    from recsys_impls import logs

    dest = logs.new_dir("parallel")
    if dest is None:
        return None
    try:
        for pattern in _KEPT:
            for f in run_dir.glob(pattern):
                if f.stat().st_size <= KEEP_BYTES:
                    shutil.copyfile(f, dest / f.name)
                else:
                    with f.open("rb") as src:
                        src.seek(-KEEP_BYTES, os.SEEK_END)
                        (dest / f.name).write_bytes(b"[... start cut ...]\n" + src.read())
        (dest / "failure.txt").write_text(f"{found['message']}\n\n{found.get('details', '')}\n")
    except OSError:
        pass  # a partial log folder is still worth naming
    return dest


def _torchrun_failures(run_dir: Path) -> dict[str, int]:
    """{rank: exit code} from torchrun's failure summary (root cause first), for ranks that died without
    a Python error of their own."""
    try:
        text = (run_dir / "torchrun.launcher-stderr").read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, int] = {}
    root_at = text.find("Root Cause")
    ordered = text[root_at:] + "\n" + text[:root_at] if root_at >= 0 else text
    for m in re.finditer(r"^\s*rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)", ordered, re.M):
        out.setdefault(m.group(1), int(m.group(2)))
    return out


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
