"""CPU thread settings shared by both frameworks: chosen once, applied alike, recorded as they really are.

Without a fixed choice PyTorch and TensorFlow pick different pool sizes (PyTorch: physical cores, one
inter-op pool; TensorFlow: all logical cores for both pools), so a framework comparison would also
compare thread policies. ``resolve`` makes the choice; ``export_env`` passes it to the OpenMP/MKL
runtimes (read when those libraries load, so it must run before a framework is imported); each
framework's ``apply_threads`` sets its own pools; ``record_section`` reads back what the live
framework actually uses.

Default (``threads`` 0): intra-op = the CPUs this process may run on (``os.sched_getaffinity``, so a
``taskset`` or container limit is honoured), inter-op = 1, for both frameworks.

No framework is imported here; ``record_section`` only reads one that is already loaded.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from recsys_impls.errors import UsageError

# Variables the OpenMP / BLAS runtimes read at load time; the first two are exported, all are recorded.
EXPORTED_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
RECORDED_VARS = (*EXPORTED_VARS, "OPENBLAS_NUM_THREADS")
# Names export_env set itself (comma-separated), so a child process can tell them from a user's.
MARKER_VAR = "RECSYS_THREADS_EXPORTED"
DEFAULT_INTER_OP = 1

_PACKAGES = {"torch": "torch", "tf": "tensorflow"}
_APPLIED: dict[str, dict[str, Any]] = {}  # framework -> what apply_threads last asked for and got


@dataclass(frozen=True)
class ThreadSettings:
    """Pool sizes for one process and the environment that tells OpenMP/MKL the same."""

    intra_op: int
    inter_op: int
    env: dict[str, str] = field(default_factory=dict)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS): all CPUs
        return max(1, os.cpu_count() or 1)


def resolve(threads: int, inter_op: int = DEFAULT_INTER_OP) -> ThreadSettings:
    """Thread settings for a requested intra-op count; 0 means the fixed default (see the module doc)."""
    if threads < 0 or inter_op < 1:
        raise UsageError(f"threads {threads}, inter-op {inter_op}: threads must be >= 0 (0 = default), "
                         "inter-op >= 1")
    intra = threads or available_cpus()
    return ThreadSettings(intra, inter_op, {name: str(intra) for name in EXPORTED_VARS})


def export_env(settings: ThreadSettings) -> dict[str, str]:
    """Put the settings' variables into os.environ unless the user set them; returns what was set.

    The exported names are listed in RECSYS_THREADS_EXPORTED so records (also those written by child
    processes) can say whether a value came from the user or from here.
    """
    exported = {k: v for k, v in settings.env.items() if k not in os.environ}
    os.environ.update(exported)
    if exported:
        mine = set(filter(None, os.environ.get(MARKER_VAR, "").split(",")))
        os.environ[MARKER_VAR] = ",".join(sorted(mine | set(exported)))
    return exported


def env_section() -> tuple[dict[str, str | None], dict[str, str]]:
    """(values, sources) of the recorded variables; source is "user", "recsys_impls" or "unset"."""
    mine = set(os.environ.get(MARKER_VAR, "").split(","))
    values = {name: os.environ.get(name) for name in RECORDED_VARS}
    sources = {name: "unset" if v is None else "recsys_impls" if name in mine else "user"
               for name, v in values.items()}
    return values, sources


def note_applied(framework: str, settings: ThreadSettings, actual: dict[str, Any]) -> None:
    """Called by the frameworks' apply_threads: what was requested, for record_section."""
    _APPLIED[framework] = {"intra_op": settings.intra_op, "inter_op": settings.inter_op, **actual}


def live_values(framework: str) -> dict[str, int | None]:
    """intra/inter-op pool sizes from the framework's own getters; None when it is not loaded.

    TensorFlow reports 0 for a pool nobody configured (its own default applies).
    """
    if framework not in _PACKAGES:
        raise UsageError(f"framework {framework}: accepted: {', '.join(_PACKAGES)}")
    if _PACKAGES[framework] not in sys.modules:
        return {"intra_op": None, "inter_op": None}
    if framework == "torch":
        import torch

        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def record_section(framework: str) -> dict[str, Any]:
    """record["threads"]: the live framework's pool sizes, the requested ones, the environment."""
    values, sources = env_section()
    applied = _APPLIED.get(framework)
    section: dict[str, Any] = {
        "framework": framework,
        **live_values(framework),
        "requested": ({"intra_op": applied["intra_op"], "inter_op": applied["inter_op"]} if applied
                      else {"intra_op": None, "inter_op": None}),
        "env": values,
        "env_source": sources,
    }
    if section["intra_op"] is None:
        section["reason"] = f"{_PACKAGES[framework]} is not loaded in this process"
    elif applied and applied.get("errors"):
        section["reason"] = "; ".join(applied["errors"])
    return section
