"""Device, precision, compile and input-path settings of the PyTorch DLRM, from a DeviceConfig.

Resolved once when the model is built, so an impossible combination fails before any work with one
``ScenarioUnsupported`` line (a skip in asv, exit code 2 in the CLI):

* device ``cpu`` | ``cuda`` | ``cuda:N``; ``GPU:N`` is TensorFlow's spelling and is not accepted here.
* precision ``fp32`` (TF32 explicitly off on CUDA), ``tf32`` (CUDA matmul + cuDNN TF32 on),
  ``amp-fp16`` (CUDA autocast + GradScaler loss scaling), ``amp-bf16`` (autocast on CUDA or CPU).
* compile ``none`` | ``torch-compile`` | ``torch-compile-max-autotune`` (torch.compile of the dense
  part, see model.py) | ``cuda-graphs`` (inference step replayed from a captured CUDA graph).
* pinned_memory: page-locked host staging + ``non_blocking`` copies (CUDA only).
* threads: intra-op and inter-op pools from ``recsys_impls.threads.resolve`` (0 = the CPUs this
  process may use, inter-op 1; the same policy as TensorFlow), see ``apply_threads``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from recsys_impls import threads as thread_policy
from recsys_impls.config import DeviceConfig
from recsys_impls.errors import ScenarioUnsupported


@dataclass(frozen=True)
class TorchSettings:
    device: torch.device
    precision: str
    compile: str
    pinned_memory: bool
    threads: int

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}.get(self.precision)

    @property
    def uses_grad_scaler(self) -> bool:
        return self.precision == "amp-fp16"

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
        """Autocast context for the forward pass (a no-op unless an AMP precision is chosen).

        ``cache=False`` for CUDA-graph capture: the cast weights must be recomputed on every replay.
        """
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype, cache_enabled=cache)

    @contextlib.contextmanager
    def math_mode(self) -> Iterator[None]:
        """TF32 on or off for CUDA matmuls and cuDNN, restored afterwards (global flags in PyTorch)."""
        if not self.is_cuda:
            yield
            return
        allow = self.precision == "tf32"
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    def compiled(self, fn: Any) -> Any:
        """``fn`` (a module or function) under the chosen torch.compile mode; itself for the other modes."""
        if self.compile == "torch-compile":
            return torch.compile(fn)
        if self.compile == "torch-compile-max-autotune":
            return torch.compile(fn, mode="max-autotune")
        return fn

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": str(self.device),
            "precision": self.precision,
            "tf32": self.is_cuda and self.precision == "tf32",
            "autocast_dtype": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else None,
            "loss_scaling": self.uses_grad_scaler,
            "compile": self.compile,
            "pinned_memory": self.pinned_memory,
            "non_blocking_copies": self.pinned_memory,
            "threads": torch.get_num_threads(),
        }
        if self.is_cuda:
            out["gpu_name"] = torch.cuda.get_device_name(self.device)
            out["cuda_version"] = torch.version.cuda
        return out


def resolve(cfg: DeviceConfig) -> TorchSettings:
    """Check a DeviceConfig against this machine and PyTorch; ScenarioUnsupported says why not."""
    device = _resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cfg.precision == "tf32" and not cuda:
        raise ScenarioUnsupported("precision tf32: TF32 is an NVIDIA GPU matmul mode; on cpu use fp32 or amp-bf16")
    if cfg.precision == "amp-fp16" and not cuda:
        raise ScenarioUnsupported(
            "precision amp-fp16: fp16 autocast with loss scaling needs a CUDA device; on cpu use amp-bf16"
        )
    if cfg.precision == "amp-bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ScenarioUnsupported(f"precision amp-bf16: {torch.cuda.get_device_name(device)} has no bf16 support")
    if cfg.compile == "xla":
        raise ScenarioUnsupported(
            "compile xla: XLA is the TensorFlow compile mode here; PyTorch accepts none, torch-compile, "
            "torch-compile-max-autotune, cuda-graphs"
        )
    if cfg.compile == "cuda-graphs" and not cuda:
        raise ScenarioUnsupported("compile cuda-graphs: CUDA graphs need a CUDA device")
    if cfg.pinned_memory and not cuda:
        raise ScenarioUnsupported("pinned_memory: page-locked host buffers only matter for copies to a CUDA device")
    apply_threads(thread_policy.resolve(cfg.threads))
    return TorchSettings(device, cfg.precision, cfg.compile, cfg.pinned_memory, cfg.threads)


def apply_threads(settings: thread_policy.ThreadSettings) -> dict[str, Any]:
    """Set PyTorch's intra-op and inter-op pools; returns the sizes PyTorch reports afterwards.

    The inter-op pool can be sized once per process, before any inter-op work: a later, different
    request cannot take effect, so it is reported in ``errors`` (and in the record) instead of failing.
    """
    errors = []
    torch.set_num_threads(settings.intra_op)
    if torch.get_num_interop_threads() != settings.inter_op:
        try:
            torch.set_num_interop_threads(settings.inter_op)
        except RuntimeError:
            errors.append(f"torch inter-op threads stay {torch.get_num_interop_threads()} (requested "
                          f"{settings.inter_op}): the pool was already started or sized in this process")
    actual: dict[str, Any] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    thread_policy.note_applied("torch", settings, {"actual": dict(actual), "errors": errors})
    return {**actual, "requested": {"intra_op": settings.intra_op, "inter_op": settings.inter_op},
            "errors": errors}


def _resolve_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("GPU:"):
        raise ScenarioUnsupported(f"device {name}: that is TensorFlow's device name; PyTorch uses cuda or cuda:N")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ScenarioUnsupported(f"device {name}: no CUDA device visible to PyTorch {torch.__version__} ({build})")
    device = torch.device(name)
    index = device.index if device.index is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise ScenarioUnsupported(f"device {name}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)
