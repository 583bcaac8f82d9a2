"""Before a scenario's framework starts in this (CLI) process: thread environment, quiet TensorFlow start.

TensorFlow 2.21 writes about seven lines through absl on every start (oneDNN notice, CUDA stub probing,
and on a machine without a GPU ``E0000 ... failed call to cuInit``), all of them *before* absl's log is
initialised, where ``TF_CPP_MIN_LOG_LEVEL`` is not consulted (level 3 still leaves six of them;
``ABSL_MIN_LOG_LEVEL`` is a compile-time setting, not read from the environment). The one switch that
remains is where file descriptor 2 points: while TensorFlow is imported and probes its devices it points
at a log file, then back at the terminal. Everything later (warnings, errors, progress) is untouched.

The log file is removed when the process ends normally; when the command fails its path is printed
(``failure_note``) and it is kept. ``--verbose`` captures nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from recsys_impls import threads
from recsys_impls.config import Scenario

_LOG: dict[str, Path] = {}  # "tf" -> the start-up log of this process, while it exists
_KEEP: set[str] = set()


def prepare(scenario: Scenario, verbose: bool = False) -> Path | None:
    """Export the thread variables and, for TensorFlow, import it quietly; returns the log's path.

    Only for a scenario that runs in this process: distributed modes start their own workers.
    """
    plan_threads = _single_process_threads(scenario)
    if plan_threads is None:
        return None
    threads.export_env(threads.resolve(plan_threads))
    if scenario.framework != "tf" or verbose:
        return None
    return quiet_tensorflow_start()


def _single_process_threads(scenario: Scenario) -> int | None:
    if scenario.parallel in ("", "none"):
        return scenario.device.threads
    from recsys_impls.parallel.spec import parse_parallel

    plan = parse_parallel(scenario.parallel)
    return plan.threads if plan.mode == "threads" else None


@contextlib.contextmanager
def fd2_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 (C/C++ stderr, and Python's) at ``path`` for the block, then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow_start() -> Path:
    """Import TensorFlow and let it probe its devices with its start-up log going to a file.

    The thread pools are not touched (the context is not initialised): the model still sizes them.
    If the import or the probe fails, the captured text is copied to stderr before the error goes on.
    """
    if "tf" in _LOG or "tensorflow" in sys.modules:
        return _LOG.get("tf") or Path(os.devnull)
    fd, name = tempfile.mkstemp(prefix="recsys-tf-start-", suffix=".log")
    os.close(fd)
    path = Path(name)
    _LOG["tf"] = path
    atexit.register(_cleanup)
    sys.excepthook = _note_after_traceback(sys.excepthook)
    try:
        with fd2_to(path):
            from recsys_impls.tf_impl import runtime

            runtime.probe_devices()
    except BaseException:
        _KEEP.add("tf")
        sys.stderr.write(path.read_text(errors="replace"))
        raise
    return path


def failure_note() -> str | None:
    """One line naming the kept start-up log, for a command that failed after TensorFlow started."""
    path = _LOG.get("tf")
    if path is None or not path.is_file():
        return None
    _KEEP.add("tf")
    return f"note: TensorFlow's start-up messages are in {path} (--verbose shows them)"


def _note_after_traceback(hook):  # type: ignore[no-untyped-def]
    def excepthook(kind, value, tb):  # type: ignore[no-untyped-def]
        hook(kind, value, tb)
        note = failure_note()
        if note:
            print(note, file=sys.stderr)

    return excepthook


def _cleanup() -> None:
    # sys.last_value: set by the interpreter when an uncaught exception ended the program.
    if "tf" in _KEEP or hasattr(sys, "last_value"):
        return
    path = _LOG.pop("tf", None)
    if path is not None:
        path.unlink(missing_ok=True)
