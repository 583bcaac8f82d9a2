"""Measurement wrapped around an implementation from outside: clocks, host memory and CPU time,
NVML power/energy/memory capture, and the environment fingerprint.

numpy-only and cheap to import: torch, TensorFlow and pynvml are imported lazily, only when used.
"""

from recsys_impls.measure.fingerprint import environment_fingerprint, machine_name
from recsys_impls.measure.host import (
    RaplReader,
    cpu_energy_status,
    cpu_energy_window,
    cpu_time_s,
    host_window,
    peak_rss_bytes,
)
from recsys_impls.measure.nvml import NvmlSampler, sampler_overhead
from recsys_impls.measure.timing import latency_percentiles

__all__ = [
    "NvmlSampler",
    "RaplReader",
    "cpu_energy_status",
    "cpu_energy_window",
    "cpu_time_s",
    "environment_fingerprint",
    "host_window",
    "latency_percentiles",
    "machine_name",
    "peak_rss_bytes",
    "sampler_overhead",
]
