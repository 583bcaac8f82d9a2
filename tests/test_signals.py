"""The signal policy: a signal becomes Interrupted (exit 128 + N), the tree the scope started is ended,
handlers and environment are put back, ignored signals stay ignored, a stuck main thread is ended anyway.

Every case that ends a tree runs in its own Python process: ending "this process's descendants" inside
pytest would hit whatever else the test session has started.
"""

from __future__ import annotations

import json
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

# Prints {"pids": [...]} once its children run, waits for a signal, prints what the scope did.
_SCRIPT = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    from recsys_impls import signals

    SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
    mode = sys.argv[1]
    # A shell's background job inherits SIGINT ignored, and the policy leaves ignored signals alone:
    # start from the default dispositions, as a run from a terminal does.
    for s in signals.HANDLED:
        signal.signal(s, signal.SIG_DFL)
    name = f"{signals.MARKER_PREFIX}{os.getpid()}"
    handler_before = signal.getsignal(signal.SIGTERM)
    try:
        with signals.policy(watchdog_s=1.0 if mode == "swallow" else None) as scope:
            marked = name in os.environ
            child = subprocess.Popen(SLEEPER, start_new_session=True)  # own session, as run_group starts them
            # a grandchild re-parented to init once its parent exits
            parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                                       f"print(subprocess.Popen({SLEEPER!r}, start_new_session=True).pid)"],
                                      stdout=subprocess.PIPE, text=True)
            orphan = int(parent.stdout.readline())
            parent.wait()
            print(json.dumps({"pids": [child.pid, orphan]}), flush=True)
            while True:
                try:
                    time.sleep(0.05)
                except BaseException:
                    if mode != "swallow":
                        raise  # a careless except in "swallow" mode: the main thread never unwinds
    except signals.Interrupted as exc:
        print(json.dumps({"code": exc.exit_code, "line": scope.line(), "ended": scope.ended, "marked": marked,
                          "env_restored": name not in os.environ,
                          "handler_restored": signal.getsignal(signal.SIGTERM) is handler_before}), flush=True)
        sys.exit(exc.exit_code)
""")


def _start(mode: str) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, mode], cwd=ROOT, env={**os.environ,
                            "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = json.loads(proc.stdout.readline())["pids"]
    time.sleep(0.3)  # into the waiting loop
    return proc, pids


def _cleanup(proc: subprocess.Popen, pids: list[int]) -> None:
    # The sleepers hold the script's output pipes: end them first, or reading its output waits on them.
    for pid in pids:
        if procs.alive(pid):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_ends_the_tree_and_exits_128_plus_n(sig: int) -> None:
    proc, pids = _start("plain")
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        report = json.loads(out.strip().splitlines()[-1])
        assert proc.returncode == report["code"] == 128 + sig, err
        assert report["line"] == f"interrupted by {signal.Signals(sig).name}; ended 2 process(es) the run had left"
        assert sorted(report["ended"]) == sorted(pids) and not any(procs.alive(p) for p in pids)
        assert report["marked"] and report["env_restored"] and report["handler_restored"]
    finally:
        _cleanup(proc, pids)


def test_watchdog_ends_a_main_thread_that_swallows_the_interrupt() -> None:
    proc, pids = _start("swallow")
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert "interrupted by SIGTERM" in err and "(forced after 1s)" in err
        assert not any(procs.alive(p) for p in pids)
    finally:
        _cleanup(proc, pids)


def test_interrupted_carries_the_signal() -> None:
    exc = signals.Interrupted(signal.SIGHUP)
    assert (exc.signum, exc.signal_name, exc.exit_code, str(exc)) == (1, "SIGHUP", 129, "interrupted by SIGHUP")
    assert not isinstance(exc, Exception)  # `except Exception` must not record it as a failed scenario


def test_normal_exit_leaves_children_alone() -> None:
    child = None
    try:
        with signals.policy() as scope:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
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


def test_run_child_returns_the_exit_code() -> None:
    assert signals.run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
