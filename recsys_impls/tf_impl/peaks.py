"""This machine's memory bandwidth and GEMM FLOP/s as TensorFlow reaches them (CPU).

STREAM copy and triad are XLA-compiled assignments into a preallocated ``tf.Variable``
(``dst.assign(src)``, ``a.assign(b + s * c)``): XLA fuses the triad into one loop and writes the variable's
buffer in place. Eager ops would allocate a fresh 100+ MiB output per call, and the page faults of that
allocation would be timed as bandwidth (8 GB/s for an eager copy here, against 22 GB/s); an eager assign is no good
either, it adopts the source buffer without copying. GEMMs are eager fp32 and bf16 ``tf.matmul``.

TensorFlow fixes its intra-op thread pool when its runtime starts, so ``measure`` must run before any
other TensorFlow op in the process; recsys_impls/measure/peaks.py runs it in a fresh subprocess
(``python -m recsys_impls.tf_impl.peaks --threads N``, one JSON object on stdout). Sizes, repeats and
which figure is kept: recsys_impls/measure/peakcore.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import tensorflow as tf

from recsys_impls.measure import peakcore


def _set_threads(threads: int | None) -> int:
    """Set TensorFlow's intra-op threads (before its runtime starts); the count in effect."""
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        except RuntimeError:
            current = tf.config.threading.get_intra_op_parallelism_threads()
            if current != threads:
                raise RuntimeError(
                    f"tf peaks: TensorFlow's runtime already started with intra-op threads {current or 'default'}; "
                    f"measure {threads} threads in a fresh process (python -m recsys_impls.tf_impl.peaks)"
                ) from None
    set_to = tf.config.threading.get_intra_op_parallelism_threads()
    from recsys_impls.threads import available_cpus

    return int(set_to) if set_to else available_cpus()


def measure(threads: int | None = None, device: str = "cpu", array_bytes: int | None = None,
            gemm_sizes: tuple[int, int] | None = None, repeats: int = peakcore.REPEATS,
            min_sample_s: float = peakcore.MIN_SAMPLE_S) -> dict[str, Any]:
    """Measure the CPU peaks at ``threads`` intra-op threads (None: TensorFlow's default).

    ``array_bytes`` and ``gemm_sizes`` override the STREAM array size and the (first, largest) matmul size.
    Returns the entry described in recsys_impls/measure/peaks.py.
    """
    if device != "cpu":
        raise ValueError(f"tf peaks: device {device!r}; only cpu is measured for TensorFlow")
    started = time.perf_counter()
    used = _set_threads(threads)
    cache = peakcore.llc_bytes()
    nbytes = int(array_bytes or peakcore.cpu_array_bytes(cache))
    elems = max(1, nbytes // 4)

    def sync() -> None:
        return None  # eager CPU execution returns when the op is done

    with tf.device("/CPU:0"):
        stream = _stream(elems, sync, repeats, min_sample_s)
        gemms: dict[str, dict[str, float | int] | None] = {"tf32": None}
        for kind, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
            gemms[kind] = peakcore.gemm_rate(lambda n, dtype=dtype: _mm(n, dtype), sync,
                                             gemm_sizes or peakcore.CPU_GEMM_N, repeats, min_sample_s)
    method = peakcore.method_text(repeats, min_sample_s) + "; copy/triad XLA-compiled into a preallocated variable"
    return peakcore.entry("tf", str(tf.__version__), device, used, cache, elems * 4, stream, gemms, started, method)


def _stream(elems: int, sync: Any, repeats: int, min_sample_s: float) -> dict[str, Any]:
    a = tf.Variable(tf.zeros([elems], tf.float32))
    b = tf.fill([elems], 1.0)
    c = tf.fill([elems], 2.0)
    s = tf.constant(3.0)

    @tf.function(jit_compile=True)
    def copy() -> None:
        a.assign(b)

    @tf.function(jit_compile=True)
    def triad() -> None:
        a.assign(b + s * c)

    return peakcore.stream_rates(copy, triad, elems * 4, sync, repeats, min_sample_s)


def _mm(n: int, dtype: tf.DType) -> Any:
    gen = tf.random.Generator.from_seed(0)
    x = tf.cast(gen.normal([n, n]), dtype)
    y = tf.cast(gen.normal([n, n]), dtype)
    return lambda: tf.matmul(x, y)


def main(argv: list[str] | None = None) -> int:
    """Measure in this (fresh) process and print the entry as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m recsys_impls.tf_impl.peaks")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: TensorFlow's default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        out = measure(args.threads or None, args.device, **(peakcore.QUICK if peakcore.quick_mode() else {}))
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
