"""One signal policy for a command and every process it starts.

Inside ``policy()``, SIGTERM, SIGINT and SIGHUP raise ``Interrupted`` in the main thread, so every
``finally`` on the way out runs: the launcher ends its process group, run folders are removed. When
the scope is left by an interrupt, whatever is still alive of the tree is ended as well. The tree is
everything whose environment carries the scope's marker variable (every child inherits it, whatever
session it starts), plus this process's descendants. A watchdog thread ends the tree and the process
if the main thread cannot unwind (stuck in a C call). Signals ignored when the scope is entered
(``nohup``, a background job's SIGINT) stay ignored. The caller prints ``scope.line()`` and exits
with ``exc.exit_code`` (128 + the signal number).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from recsys_impls.parallel import procs

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
MARKER_PREFIX = "RECSYS_TREE_"
# After the first signal, repeats within this many seconds are ignored: the cleanup is running.
REPEAT_IGNORED_S = 10.0
WATCHDOG_S = 20.0
# How long the tree's processes get between SIGTERM and SIGKILL: long enough for a child that has its
# own policy (an asv benchmark process) to end its launcher group and remove its run folder.
GRACE_S = 5.0


class Interrupted(BaseException):
    """A handled signal. A BaseException, like KeyboardInterrupt: ``except Exception`` must not record it
    as a failed scenario and go on."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class Scope:
    """What one ``policy()`` saw: the marker its children carry, the signal, what was ended at the end."""

    marker: str
    signum: int | None = None
    first_at: float = 0.0
    ended: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tree_ended: bool = False

    def end_tree(self, grace_s: float = GRACE_S) -> None:
        """SIGTERM, then SIGKILL, every process of the tree; repeated while new ones appear (a parent that
        was still starting children when it got its SIGTERM)."""
        with self._lock:
            if self._tree_ended:
                return
            me = os.getpid()
            for _ in range(3):
                tree = {**procs.descendants(me), **procs.marked(self.marker)}
                tree.pop(me, None)
                tree = {p: t for p, t in tree.items() if procs.alive(p, t) and p not in self.ended}
                if not tree:
                    break
                left = procs.terminate(tree, grace_s=grace_s)
                self.ended += [p for p in tree if p not in left]
                self.survivors = left
            self._tree_ended = True

    def line(self) -> str:
        """The one line the user sees."""
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        text = f"interrupted by {name}"
        if self.ended:
            text += f"; ended {len(self.ended)} process(es) the run had left"
        if self.survivors:
            text += f"; could not end pid(s) {', '.join(map(str, self.survivors))}"
        return text


def _handler(scope: Scope, watchdog_s: float | None) -> Any:
    def handle(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if scope.signum is not None and now - scope.first_at < REPEAT_IGNORED_S:
            return  # already unwinding: let the cleanup finish
        if scope.signum is None:
            scope.signum, scope.first_at = signum, now
            if watchdog_s is not None:
                threading.Thread(target=_watchdog, args=(scope, watchdog_s), daemon=True,
                                 name="recsys-signal-watchdog").start()
        raise Interrupted(signum)

    return handle


def _watchdog(scope: Scope, after_s: float) -> None:
    """The main thread did not unwind in time: end the tree and the process from here."""
    if scope.done.wait(after_s):
        return
    scope.end_tree(grace_s=2.0)
    try:
        print(scope.line() + f" (forced after {after_s:.0f}s)", file=sys.stderr, flush=True)
    finally:
        os._exit(128 + (scope.signum or signal.SIGTERM))


@contextmanager
def policy(watchdog_s: float | None = WATCHDOG_S) -> Iterator[Scope]:
    """Handle SIGTERM/SIGINT/SIGHUP for the body (see the module docstring). Outside the main thread only
    the marker is set (Python delivers signals to the main thread alone)."""
    name = f"{MARKER_PREFIX}{os.getpid()}"
    value = uuid.uuid4().hex
    scope = Scope(marker=f"{name}={value}")
    had = os.environ.get(name)
    os.environ[name] = value
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        handle = _handler(scope, watchdog_s)
        for sig in HANDLED:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:
                continue
            previous[sig] = current
            signal.signal(sig, handle)
    try:
        yield scope
    except Interrupted as exc:
        if scope.signum is None:  # raised by hand, or by an outer policy's handler
            scope.signum = exc.signum
        scope.end_tree()
        raise
    finally:
        scope.done.set()
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if had is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = had


def run_child(argv: list[str], **popen: Any) -> int:
    """Run a command to completion in its own session and return its exit code.

    Its own session: a terminal's Ctrl-C reaches only us, and the policy ends the child and all of its
    descendants (asv puts each benchmark in its own process group) in order, instead of each dying alone.
    """
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: the policy ends the tree; reap what it ends
            try:
                proc.terminate()
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
