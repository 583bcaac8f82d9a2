"""Process-tree bookkeeping on Linux: find every descendant of a launched process and end them all.

torchrun starts its workers in new sessions, so killing a process group is not enough: we record the
whole tree while it runs (pid + start time, so a recycled pid is never hit) and end each by its id.
Three nets catch a process: parentage (``descendants``), the session it was started in (``in_sessions``:
children that only change their process group, as asv's do, stay in it even once re-parented to init),
and a marker variable in its environment (``marked``: inherited by everything not started with a
scrubbed environment, whatever its session or parent).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def _fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...), or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    rest = _fields(pid)
    if rest is None:
        return None
    # fields after the command: state ppid pgrp session ... starttime is field 22 overall (index 19 here)
    return int(rest[1]), int(rest[19])


def _pids() -> list[int]:
    if not _PROC.is_dir():
        return []
    return [int(e.name) for e in _PROC.iterdir() if e.name.isdigit()]


def in_sessions(sessions: set[int]) -> dict[int, int]:
    """{pid: start_time} of live processes (other than this one) whose session id is in ``sessions``.

    Our own session is never matched (that would be the user's shell and its other jobs)."""
    out: dict[int, int] = {}
    me = os.getpid()
    sessions = sessions - {os.getsid(0)}
    if not sessions:
        return out
    for pid in _pids():
        rest = _fields(pid)
        if rest is not None and pid != me and int(rest[3]) in sessions and rest[0] != "Z":
            out[pid] = int(rest[19])
    return out


def descendants(root: int) -> dict[int, int]:
    """{pid: start_time} of every live descendant of ``root`` (not root itself)."""
    if not _PROC.is_dir():
        return {}
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None:
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in out:
                out[pid] = start
                todo.append(pid)
    return out


def marked(marker: str) -> dict[int, int]:
    """{pid: start_time} of live processes whose environment holds ``marker`` ("NAME=value").

    Catches descendants that were re-parented to init before we saw them (their parent exited first)."""
    if not _PROC.is_dir():
        return {}
    needle = marker.encode() + b"\0"
    out: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env or env.endswith(marker.encode()):
            st = _stat(int(entry.name))
            if st is not None:
                out[int(entry.name)] = st[1]
    return out


def alive(pid: int, start_time: int | None = None) -> bool:
    """Whether ``pid`` still runs (and, if given, is the same process that started at ``start_time``)."""
    st = _stat(pid)
    if st is None:
        return False
    try:
        state = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        return False
    return start_time is None or st[1] == start_time


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident memory (VmHWM) of a live process, or None (gone, or no /proc)."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def terminate(pids: dict[int, int], grace_s: float = 3.0) -> list[int]:
    """SIGTERM each recorded process, wait up to ``grace_s``, SIGKILL the rest. Returns pids still alive."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [p for p, t in pids.items() if alive(p, t)]
        for p in live:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(alive(p, pids[p]) for p in live):
            time.sleep(0.05)
    return [p for p, t in pids.items() if alive(p, t)]
