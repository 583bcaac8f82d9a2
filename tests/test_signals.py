"""The signal policy in one process: a signal becomes Interrupted, the tree it started is ended, handlers
and environment are put back, ignored signals stay ignored, and a stuck main thread is ended anyway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recsys_impls import signals
from recsys_impls.parallel import procs

ROOT = Path(__file__).resolve().parents[1]
_SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    for _ in range(100):  # the handler runs between bytecodes of the main thread
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_becomes_interrupted_with_128_plus_n(sig: int) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(signals.Interrupted) as err, signals.policy() as scope:
        _deliver(sig)
    assert err.value.signum == sig and err.value.exit_code == 128 + sig
    assert scope.line().startswith(f"interrupted by {signal.Signals(sig).name}")
    assert signal.getsignal(sig) is before


def test_interrupt_ends_children_in_other_sessions_and_restores_the_environment() -> None:
    started: list[subprocess.Popen] = []
    name = f"{signals.MARKER_PREFIX}{os.getpid()}"
    try:
        with pytest.raises(signals.Interrupted), signals.policy() as scope:
            assert name in os.environ
            # one child in its own session (as run_group starts them), one grandchild re-parented to init
            started.append(subprocess.Popen(_SLEEPER, start_new_session=True))
            started.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
                import subprocess, sys
                p = subprocess.Popen({_SLEEPER!r}, start_new_session=True)
                print(p.pid, flush=True)
            """)], stdout=subprocess.PIPE, text=True))
            orphan = int(started[-1].stdout.readline())
            started[-1].wait()
            _deliver(signal.SIGTERM)
        assert not procs.alive(started[0].pid) and not procs.alive(orphan)
        assert started[0].pid in scope.ended and orphan in scope.ended and scope.survivors == []
        assert "ended 2 process(es)" in scope.line()
        assert name not in os.environ
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.wait()


def test_normal_exit_leaves_children_alone() -> None:
    child = None
    try:
        with signals.policy() as scope:
            child = subprocess.Popen(_SLEEPER)
        assert child.poll() is None and scope.ended == []
    finally:
        if child is not None:
            child.kill()
            child.wait()


def test_ignored_signal_stays_ignored() -> None:
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.policy():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_watchdog_ends_a_main_thread_that_swallows_the_interrupt(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import subprocess, sys, time
        from recsys_impls import signals
        with signals.policy(watchdog_s=1.0):
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                     start_new_session=True)
            print(child.pid, flush=True)
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    pass  # a careless except: the main thread never unwinds
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        time.sleep(0.5)  # into the swallowing loop
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert "interrupted by SIGTERM" in err and "forced after 1s" in err
        assert not procs.alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if procs.alive(child):
            os.kill(child, signal.SIGKILL)


def test_run_child_returns_the_exit_code() -> None:
    assert signals.run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
