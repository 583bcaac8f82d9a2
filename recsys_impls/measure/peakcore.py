"""Sizes and timing loops shared by the framework peak measurements (torch_impl/peaks, tf_impl/peaks).

The frameworks supply the kernels (a copy, a triad, a square matmul) and a ``sync`` that waits for the
device; everything about how long to run them and which figure to keep lives here, so both frameworks'
peaks are measured the same way.

Every figure is the best of ``repeats`` samples, each sample at least ``min_sample_s`` long (calls are
repeated within a sample until it is). Best, not median: other work on a shared machine only slows a
kernel down, so the fastest sample is the closest estimate of what the hardware and the framework's
kernel can do (STREAM reports its best time for the same reason). The median is kept beside it to show
how noisy the machine was.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

MIB = 1 << 20
FALLBACK_TOTAL_BYTES = 256 * MIB  # all three triad arrays together when the LLC size is unknown
MIN_SAMPLE_S = 0.02
REPEATS = 5
MAX_CALL_S = 1.0  # longest single matmul call the size search will go on to (see gemm_rate)
CPU_GEMM_N = (2048, 4096)  # square sizes: at least the first, doubling until one call takes MIN_SAMPLE_S
CUDA_GEMM_N = (4096, 16384)

# A rougher, seconds-cheaper measurement (small arrays and matmuls, few samples) for test sessions and
# smoke runs, where the roofline's structure matters and its accuracy does not. Entries say "quick": true
# and are never served to a full request (measure/peaks.py).
QUICK_ENV = "RECSYS_PEAKS_QUICK"
QUICK = {"array_bytes": 4 * MIB, "gemm_sizes": (256, 512), "repeats": 2, "min_sample_s": 0.005}


def quick_mode() -> bool:
    import os

    return os.environ.get(QUICK_ENV, "") == "1"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """'32768K', '32 MiB', '1024' -> bytes (binary multiples, as sysfs and lscpu mean them)."""
    m = _SIZE.match(text or "")
    if not m:
        return None
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def llc_bytes(sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int | None:
    """Total last-level cache of the machine: every distinct highest-level cache instance, summed.

    sysfs first (one entry per CPU and cache index; instances are told apart by their shared CPU list),
    then ``lscpu``'s per-level totals. None when neither answers.
    """
    instances: dict[tuple[int, str], int] = {}
    for idx in sys_cpu.glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int((idx / "level").read_text())
            kind = (idx / "type").read_text().strip()
            size = parse_size((idx / "size").read_text())
            shared = (idx / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and size:
            instances[(level, shared)] = size
    if instances:
        top = max(level for level, _ in instances)
        return sum(size for (level, _), size in instances.items() if level == top)
    return _lscpu_llc()


def _lscpu_llc() -> int | None:
    try:
        out = subprocess.run(["lscpu", "-B", "-C=LEVEL,ALL-SIZE,TYPE"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    best: tuple[int, int] | None = None
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and parts[2] != "Instruction":
            cand = (int(parts[0]), int(parts[1]))
            best = cand if best is None or cand[0] > best[0] else best
    return None if best is None else best[1]


def stream_array_bytes(cache_bytes: int | None, floor: int = 0, ceiling: int | None = None) -> int:
    """Bytes of each STREAM array: 4x the last-level cache (STREAM's rule), at least ``floor``, at most
    ``ceiling``; without a cache size, the three triad arrays share FALLBACK_TOTAL_BYTES."""
    per_array = max(4 * cache_bytes if cache_bytes else FALLBACK_TOTAL_BYTES // 3, floor)
    if ceiling:
        per_array = min(per_array, ceiling)
    return max(per_array // 4096 * 4096, 4096)


def cpu_array_bytes(cache_bytes: int | None) -> int:
    """STREAM array size on the host: the LLC rule, capped at 1/16 of RAM (machines with GiBs of L3)."""
    from recsys_impls.measure.fingerprint import memory_total_bytes

    total = memory_total_bytes()
    return stream_array_bytes(cache_bytes, ceiling=total // 16 if total else None)


def timed_rate(fn: Callable[[], Any], work_per_call: float, sync: Callable[[], None], repeats: int = REPEATS,
               min_sample_s: float = MIN_SAMPLE_S, one_call_s: float | None = None) -> dict[str, float | int]:
    """Run ``fn`` (after one warm-up call) in ``repeats`` samples of >= min_sample_s each; work units per second.

    ``one_call_s``: the time of one warm call, when the caller has already measured it (no warm-up then).
    Returns {"best", "median", "calls_per_sample", "samples"}.
    """
    if one_call_s is None:
        fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        one_call_s = time.perf_counter() - t0
    one = max(one_call_s, 1e-9)
    calls = max(1, math.ceil(min_sample_s / one))
    rates = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        rates.append(calls * work_per_call / max(time.perf_counter() - t0, 1e-12))
    return {"best": max(rates), "median": median(rates), "calls_per_sample": calls, "samples": len(rates)}


def gemm_rate(make: Callable[[int], Callable[[], Any]], sync: Callable[[], None], sizes: tuple[int, int],
              repeats: int = REPEATS, min_sample_s: float = MIN_SAMPLE_S,
              max_call_s: float = MAX_CALL_S) -> dict[str, float | int]:
    """FLOP/s of square n x n matmuls, n doubling up to sizes[0] and on (at most sizes[1]) until one call takes
    min_sample_s: big enough that blocking overheads no longer hide the peak. ``make(n)`` allocates and
    returns the call. Adds "n" to ``timed_rate``'s result.

    The doubling starts at sizes[0] / 8 and stops early where the next size's call would take longer than
    ``max_call_s``: a dtype without a native kernel (bf16 on a CPU without AVX512-BF16 or AMX runs about
    300x slower than fp32) would otherwise spend many minutes on one n = 2048 figure."""
    n_first, n_max = sizes
    n = max(1, n_first // 8)
    while True:
        fn = make(n)
        fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        one = time.perf_counter() - t0
        big_enough = n >= n_first and one >= min_sample_s
        if big_enough or 2 * n > n_max or 8 * one > max_call_s:
            break
        del fn
        n *= 2
    out = timed_rate(fn, 2.0 * n**3, sync, repeats, min_sample_s, one_call_s=one)
    out["n"] = n
    return out


def stream_rates(copy: Callable[[], Any], triad: Callable[[], Any], array_bytes: int, sync: Callable[[], None],
                 repeats: int = REPEATS, min_sample_s: float = MIN_SAMPLE_S) -> dict[str, dict[str, float | int]]:
    """Bytes/s of copy (b = a: 2 arrays) and triad (a = b + s*c: 3 arrays), counted as STREAM counts them
    (no write-allocate traffic)."""
    return {"copy": timed_rate(copy, 2.0 * array_bytes, sync, repeats, min_sample_s),
            "triad": timed_rate(triad, 3.0 * array_bytes, sync, repeats, min_sample_s)}


def method_text(repeats: int, min_sample_s: float) -> str:
    """How the figures were measured, for the cache entry."""
    ms = f"{min_sample_s * 1000:g} ms"
    return ("STREAM copy (b = a, 2 arrays counted) and triad (a = b + s*c, 3 arrays counted) over arrays of "
            f"4x the last-level cache, and square matmuls (2 n^3 FLOPs) with n doubled until one call takes >= {ms}; "
            f"each figure the best of {repeats} samples (the median beside it), each sample >= {ms}")


def entry(framework: str, version: str, device: str, threads: int | None, cache: int | None, array_bytes: int,
          stream: dict[str, dict[str, float | int]], gemms: dict[str, dict[str, float | int] | None],
          started: float, method: str) -> dict[str, Any]:
    """The cache entry both frameworks return (see measure/peaks.py)."""
    def best(r: dict[str, float | int] | None) -> float | None:
        return None if r is None else float(r["best"])

    def med(r: dict[str, float | int] | None) -> float | None:
        return None if r is None else float(r["median"])

    out: dict[str, Any] = {
        "framework": framework, "framework_version": version, "device": device, "threads": threads,
        "mem_copy_bytes_per_s": best(stream["copy"]), "mem_triad_bytes_per_s": best(stream["triad"]),
    }
    for kind in ("fp32", "tf32", "bf16"):
        out[f"gemm_{kind}_flops_per_s"] = best(gemms.get(kind))
    out["median"] = {"mem_copy_bytes_per_s": med(stream["copy"]), "mem_triad_bytes_per_s": med(stream["triad"]),
                     **{f"gemm_{k}_flops_per_s": med(gemms.get(k)) for k in ("fp32", "tf32", "bf16")}}
    out["gemm_n"] = {k: int(v["n"]) for k, v in gemms.items() if v is not None}
    out["llc_bytes"] = cache
    out["array_bytes"] = array_bytes
    out["samples"] = int(stream["triad"]["samples"])
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["method"] = method
    return out
