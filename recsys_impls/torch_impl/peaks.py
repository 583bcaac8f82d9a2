"""This machine's memory bandwidth and GEMM FLOP/s as PyTorch reaches them (the roofline's ceilings).

CPU: STREAM copy/triad with ``Tensor.copy_`` and ``torch.add(b, c, alpha=s, out=a)`` (one fused kernel,
written into a preallocated array so no page faults are timed), fp32 and bf16 ``torch.mm(out=)``.
CUDA: the same on device memory, arrays of 4x the L2 cache and at least 512 MiB, plus fp32 with TF32
off, TF32 and bf16 tensor-core matmuls, each timed to ``torch.cuda.synchronize``. Sizes, repeats and
which figure is kept: recsys_impls/measure/peakcore.py.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import torch

from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.measure import peakcore

CUDA_ARRAY_FLOOR = 512 * peakcore.MIB


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[int]:
    """torch.set_num_threads for the duration, restored after; yields the count in effect."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", name):
        raise ValueError(f"torch peaks: device {name!r}; accepted: cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise ScenarioUnsupported(f"torch peaks: device {name!r} asked for, but torch sees no CUDA device")
    dev = torch.device(name)
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def measure(threads: int | None = None, device: str = "cpu", array_bytes: int | None = None,
            gemm_sizes: tuple[int, int] | None = None, repeats: int = peakcore.REPEATS,
            min_sample_s: float = peakcore.MIN_SAMPLE_S) -> dict[str, Any]:
    """Measure the peaks at ``threads`` intra-op threads (None: torch's default) on ``device``.

    ``array_bytes`` and ``gemm_sizes`` override the STREAM array size and the (first, largest) matmul
    size, so tests can run tiny versions. Returns the entry described in recsys_impls/measure/peaks.py.
    """
    started = time.perf_counter()
    dev = _device(device)
    cuda = dev.type == "cuda"
    if cuda:
        def sync() -> None:
            torch.cuda.synchronize(dev)
        cache = int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0)) or None
        free = torch.cuda.mem_get_info(dev)[0]
        default_bytes = min(peakcore.stream_array_bytes(cache, CUDA_ARRAY_FLOOR), free // 8 // 4096 * 4096)
        sizes = gemm_sizes or peakcore.CUDA_GEMM_N
    else:
        def sync() -> None:
            return None
        cache = peakcore.llc_bytes()
        default_bytes = peakcore.cpu_array_bytes(cache)
        sizes = gemm_sizes or peakcore.CPU_GEMM_N
    nbytes = int(array_bytes or default_bytes)
    with _threads(threads) as used:
        elems = max(1, nbytes // 4)
        stream = _stream(elems, dev, sync, repeats, min_sample_s)
        gemms: dict[str, dict[str, float | int] | None] = {}
        kinds = [("fp32", torch.float32, False), ("bf16", torch.bfloat16, False)]
        if cuda:
            kinds.insert(1, ("tf32", torch.float32, True))
        for kind, dtype, tf32 in kinds:
            ctx = _tf32(tf32) if cuda else contextlib.nullcontext()
            with ctx:
                gemms[kind] = peakcore.gemm_rate(lambda n, dtype=dtype: _mm(n, dtype, dev), sync, sizes,
                                                 repeats, min_sample_s)
        if not cuda:
            gemms["tf32"] = None
    if cuda:
        torch.cuda.empty_cache()
    method = peakcore.method_text(repeats, min_sample_s)
    if cuda:
        method += "; CUDA: fp32 with TF32 off, tf32 with it on, bf16 tensor cores, timed to torch.cuda.synchronize"
    name = device if not cuda else f"cuda:{dev.index}"
    out = peakcore.entry("torch", str(torch.__version__), name, used, cache, elems * 4, stream, gemms, started,
                         method)
    if cuda:
        out["device_name"] = torch.cuda.get_device_name(dev)
    return out


def _stream(elems: int, dev: torch.device, sync: Any, repeats: int, min_sample_s: float) -> dict[str, Any]:
    a = torch.zeros(elems, dtype=torch.float32, device=dev)  # zeros/full touch every page before timing
    b = torch.full((elems,), 1.0, dtype=torch.float32, device=dev)
    c = torch.full((elems,), 2.0, dtype=torch.float32, device=dev)
    return peakcore.stream_rates(lambda: b.copy_(a), lambda: torch.add(b, c, alpha=3.0, out=a), elems * 4, sync,
                                 repeats, min_sample_s)


def _mm(n: int, dtype: torch.dtype, dev: torch.device) -> Any:
    x = torch.randn(n, n, device=dev).to(dtype)
    y = torch.randn(n, n, device=dev).to(dtype)
    out = torch.empty(n, n, dtype=dtype, device=dev)
    return lambda: torch.mm(x, y, out=out)
