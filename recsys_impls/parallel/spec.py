"""Parse the ``--parallel`` axis ("none", "threads:2", "ddp:2:fp16", "sharded:2:row-wise", ...).

Numpy-free and framework-free: parsing happens in the CLI and in asv discovery, so it must be cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from recsys_impls.errors import ScenarioUnsupported, UsageError

MODES = ("none", "threads", "ddp", "mwms", "sharded", "ps")
COMM_HOOKS = ("none", "fp16", "bf16", "powersgd")
SHARDING_TYPES = ("table-wise", "row-wise", "column-wise", "auto")
MAX_WORLD = 1024

ACCEPTED = (
    "none | threads:N | ddp:N[:fp16|bf16|powersgd] | mwms:N | "
    "sharded:N:table-wise|row-wise|column-wise|auto | ps:N"
)


@dataclass(frozen=True)
class ParallelPlan:
    """What one ``--parallel`` value asks for. ``world_size`` is the number of trainer processes."""

    spec: str
    mode: str = "none"
    world_size: int = 1
    threads: int = 0
    comm_hook: str = "none"
    sharding: str = ""

    @property
    def distributed(self) -> bool:
        """Whether the scenario runs in several processes (needs the launcher)."""
        return self.mode in ("ddp", "mwms", "sharded", "ps")

    @property
    def data_parallel(self) -> bool:
        return self.mode in ("ddp", "mwms")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(f"--parallel {spec}: {why}; accepted: {ACCEPTED}")


def _count(spec: str, text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise _bad(spec, f"{what} {text!r} is not a positive integer")
    n = int(text)
    if n > MAX_WORLD:
        raise _bad(spec, f"{what} {n} is larger than {MAX_WORLD}")
    return n


def parse_parallel(spec: str) -> ParallelPlan:
    """Turn a ``--parallel`` string into a ParallelPlan, or raise a one-line UsageError."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "empty value")
    s = spec.strip().lower()
    parts = s.split(":")
    mode = parts[0]
    if mode not in MODES:
        raise _bad(spec, f"unknown mode {mode!r}")
    if mode == "none":
        if len(parts) != 1:
            raise _bad(spec, "'none' takes no arguments")
        return ParallelPlan(spec=s)
    if len(parts) < 2:
        raise _bad(spec, f"'{mode}' needs a count, e.g. {mode}:2")
    n = _count(spec, parts[1], "count")
    if mode == "threads":
        if len(parts) != 2:
            raise _bad(spec, "'threads' takes one argument, the thread count")
        return ParallelPlan(spec=s, mode="threads", world_size=1, threads=n)
    if mode in ("ddp", "mwms"):
        if len(parts) > 3:
            raise _bad(spec, f"too many fields for '{mode}'")
        hook = parts[2] if len(parts) == 3 else "none"
        if hook not in COMM_HOOKS:
            raise _bad(spec, f"unknown communication hook {hook!r} (accepted: {', '.join(COMM_HOOKS)})")
        return ParallelPlan(spec=s, mode=mode, world_size=n, comm_hook=hook)
    if mode == "ps":
        if len(parts) != 2:
            raise _bad(spec, "'ps' takes one argument, the number of workers (and parameter servers)")
        return ParallelPlan(spec=s, mode="ps", world_size=n, sharding="row-wise")
    # sharded
    if len(parts) != 3:
        raise _bad(spec, "'sharded' needs a count and a sharding type, e.g. sharded:2:table-wise")
    if parts[2] not in SHARDING_TYPES:
        raise _bad(spec, f"unknown sharding type {parts[2]!r} (accepted: {', '.join(SHARDING_TYPES)})")
    return ParallelPlan(spec=s, mode="sharded", world_size=n, sharding=parts[2])


# Why a valid plan cannot run with a framework; checked before anything is launched.
_TF_SHARDED = {"table-wise", "row-wise"}


def check_supported(plan: ParallelPlan, framework: str, device: str = "cpu") -> None:
    """Raise ScenarioUnsupported (with the reason) for valid plans this framework/device cannot run."""
    gpu = device != "cpu"
    if framework == "torch":
        if plan.mode == "mwms":
            raise ScenarioUnsupported("parallel mwms: MultiWorkerMirroredStrategy is TensorFlow-only; use ddp:N")
        if plan.mode == "ps":
            raise ScenarioUnsupported("parallel ps: ParameterServerStrategy is TensorFlow-only; use sharded:N:...")
        if plan.mode == "ddp" and plan.comm_hook == "bf16" and not gpu:
            raise ScenarioUnsupported("ddp bf16 compression hook needs NCCL (GPU); gloo on CPU has no bf16 path")
        if plan.mode == "ddp" and plan.comm_hook in ("fp16", "powersgd"):
            # Our PyTorch DLRM uses sparse embedding gradients; gloo cannot fp16-add sparse tensors and
            # PowerSGD hangs on them, so the hook applies to the dense (MLP) part only (see worker).
            pass
        return
    if framework == "tf":
        if plan.mode == "ddp" and plan.comm_hook != "none" or plan.mode == "mwms" and plan.comm_hook != "none":
            raise ScenarioUnsupported(
                f"parallel {plan.spec}: TensorFlow's MultiWorkerMirroredStrategy CommunicationOptions choose the "
                "collective implementation and packing only; it has no gradient-compression hooks"
            )
        if plan.mode == "sharded" and plan.sharding not in _TF_SHARDED:
            raise ScenarioUnsupported(
                f"parallel {plan.spec}: TensorFlow ParameterServerStrategy places whole variables (table-wise) or "
                "partitions them by rows (row-wise); column-wise/auto plans are TorchRec-only"
            )
        return
    raise UsageError(f"--framework {framework}: accepted: torch, tf")


def describe_modes() -> list[tuple[str, str]]:
    """(form, meaning) rows for ``python -m recsys_impls list``."""
    return [
        ("none", "one process, framework default threads"),
        ("threads:N", "one process, N intra-op threads (torch.set_num_threads / tf.config.threading)"),
        ("ddp:N", "data parallel over N processes, same global batch (PyTorch DDP via torchrun; "
                  "TensorFlow MultiWorkerMirroredStrategy); ranking and retrieval models (two-tower: global "
                  "in-batch negatives)"),
        ("ddp:N:fp16|bf16|powersgd", "PyTorch DDP with a gradient-communication compression hook "
                                     "(bf16 needs NCCL/GPU)"),
        ("mwms:N", "TensorFlow MultiWorkerMirroredStrategy, N workers (alias of ddp:N for tf)"),
        ("sharded:N:table-wise|row-wise|column-wise|auto", "embeddings sharded over N processes: TorchRec "
            "DistributedModelParallel (PyTorch); TensorFlow ParameterServerStrategy, N workers + N ps "
            "(table-wise, row-wise)"),
        ("ps:N", "TensorFlow ParameterServerStrategy, N workers + N ps, tables partitioned by rows "
                 "(same as sharded:N:row-wise)"),
    ]
