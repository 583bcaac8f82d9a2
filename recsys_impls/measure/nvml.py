"""NVML capture beside a measured window: power, energy, device memory, utilization, clocks.

Every NVML call goes through the module object handed to ``NvmlSampler`` (default: ``pynvml`` from
``nvidia-ml-py``, imported lazily), so tests can pass a fake module with scripted readings
(``recsys_impls.measure.fake_nvml``). Nothing here raises when NVML or a GPU is absent: figures are
``None`` and ``reason`` says why.

Energy, in order of preference:
* ``counter``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer),
  differenced between consecutive readings so a reset mid-window loses at most one interval.
* ``sampled``: ``nvmlDeviceGetPowerUsage`` (mW) read by a background thread every ``interval_s``
  and integrated with the trapezoid rule; the interval is recorded.
Idle power is measured separately (``measure_idle``) so the record has gross and net-of-idle energy.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

# NVML refreshes the energy counter and the power reading every 20-100 ms depending on GPU and
# driver (and on some boards the power value is itself a ~1 s average). A window shorter than the
# slowest refresh cannot be resolved by either method, so it is flagged ``short_window``.
COUNTER_UPDATE_PERIOD_S = 0.1

# The energy counter is an unsigned 64-bit count of mJ. A wrap needs ~5.8e14 J, so a value that goes
# down is almost always a reset (driver reload, GPU reset); it is a wrap only if the previous value
# was within this margin of the top.
NVML_COUNTER_MAX = 2**64
_WRAP_MARGIN = 2**32

# Clock-event ("throttle") reason bits, as documented in nvml.h.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

# Error classes after which a field is not queried again (pynvml names them NVMLError_<Kind>).
_PERMANENT_ERRORS = ("NotSupported", "NoPermission", "FunctionNotFound", "AttributeError", "NotImplemented")

_NVML_CLOCK_SM = 1  # NVML_CLOCK_SM
_NVML_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU

SUMMARY_KEYS = (
    "joules", "joules_net", "joules_per_1k_samples", "joules_net_per_1k_samples", "mean_watts",
    "peak_watts", "idle_watts", "peak_device_memory_bytes", "method", "sample_interval_s", "window_s",
    "n_samples", "short_window", "gpus", "reason",
)


def nvml_error_reason(exc: BaseException) -> str:
    """One line naming an NVML failure by its class (e.g. ``NVMLError_LibraryNotFound``)."""
    name = type(exc).__name__
    text = str(exc).strip()
    lowered = f"{name} {text}".lower()
    hint = " (permission denied)" if "permission" in lowered and "permission" not in text.lower() else ""
    return f"{name}: {text}{hint}" if text else f"{name}{hint}"


def _visible_indices(nvml: Any, count: int) -> list[int]:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES (indices or UUIDs) if set, else all.

    NVML ignores CUDA_VISIBLE_DEVICES, so without this a run on one GPU of eight would be charged
    the energy of all eight.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None or not env.strip():
        return list(range(count))
    wanted = [t.strip() for t in env.split(",") if t.strip()]
    out: list[int] = []
    for token in wanted:
        if token.isdigit():
            if int(token) < count:
                out.append(int(token))
            continue
        for i in range(count):  # a UUID or a unique UUID prefix
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
            except Exception:  # noqa: BLE001 - an unreadable UUID just does not match
                continue
            if uuid.startswith(token) or uuid.startswith("GPU-" + token):
                out.append(i)
                break
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_nvml(
    nvml: Any | None = None, devices: Sequence[int] | None = None
) -> tuple[Any | None, list[tuple[int, Any]], str | None]:
    """Initialise NVML: (module, [(index, handle)], None) or (None, [], reason). Never raises.

    A successful open must be paired with ``nvml.nvmlShutdown()`` (NVML counts inits).
    """
    if nvml is None:
        try:
            import pynvml as nvml  # noqa: PLC0415 - lazy: keeps `import recsys_impls` cheap
        except ImportError as exc:
            return None, [], f"pynvml is not installed (pip install nvidia-ml-py): {exc}"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - any NVML failure means "no figures", with the reason
        return None, [], nvml_error_reason(exc)
    try:
        count = int(nvml.nvmlDeviceGetCount())
        indices = list(devices) if devices is not None else _visible_indices(nvml, count)
        if count == 0:
            raise LookupError("no NVIDIA device: NVML reports 0 GPUs")
        if not indices:
            env = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise LookupError(f"no NVIDIA device visible: CUDA_VISIBLE_DEVICES={env!r} matches none of {count}")
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise LookupError(f"no NVIDIA device with index {bad[0]}: NVML reports {count} GPU(s)")
        handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
    except LookupError as exc:
        _shutdown(nvml)
        return None, [], str(exc)
    except Exception as exc:  # noqa: BLE001
        _shutdown(nvml)
        return None, [], nvml_error_reason(exc)
    return nvml, handles, None


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:  # noqa: BLE001, S110 - shutting down a half-open library cannot be helped
        pass


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one instant. Fields the GPU does not support are None."""

    power_w: float | None
    energy_mj: int | None
    memory_used_bytes: int | None
    utilization_pct: float | None
    sm_clock_mhz: float | None
    temperature_c: float | None
    throttle_mask: int | None


@dataclass(frozen=True)
class Reading:
    t: float  # clock time (s) of the reading
    gpus: tuple[GpuReading, ...]


def counter_delta_mj(prev: int, cur: int) -> tuple[float, bool]:
    """Energy (mJ) between two counter values, and whether the counter was reset.

    Goes down near the 64-bit top: a wrap, add the range. Goes down elsewhere: a reset, count only
    ``cur`` (the energy since the reset), which under-counts rather than inventing energy.
    """
    if cur >= prev:
        return float(cur - prev), False
    if prev >= NVML_COUNTER_MAX - _WRAP_MARGIN:
        return float(NVML_COUNTER_MAX - prev + cur), False
    return float(cur), True


def trapezoid_joules(times_s: Sequence[float], watts: Sequence[float]) -> float:
    """Energy (J) of power samples by the trapezoid rule; 0.0 for fewer than two samples."""
    if len(times_s) != len(watts):
        raise ValueError(f"{len(times_s)} times but {len(watts)} power samples")
    total = 0.0
    for i in range(1, len(times_s)):
        total += 0.5 * (watts[i] + watts[i - 1]) * (times_s[i] - times_s[i - 1])
    return total


def decode_throttle(mask: int) -> list[str]:
    """Names of the clock-event reasons set in an NVML bitmask."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"other_0x{unknown:x}")
    return names


def null_summary(reason: str) -> dict[str, Any]:
    """The energy section when nothing could be measured: every figure None, with the reason."""
    out: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    out["gpus"] = []
    out["reason"] = reason
    return out


class NvmlSampler:
    """Samples NVML beside measured windows. Construct it once per process and reuse it.

    ``available`` is False (and ``reason`` set) when NVML or a GPU is absent; ``window()`` still
    works then, its summary holds ``None`` figures, and the background thread still runs so that
    the sampler's overhead can be measured on any machine.
    """

    def __init__(
        self,
        interval_s: float = 0.05,
        nvml: Any | None = None,
        clock: Callable[[], float] = time.perf_counter,
        devices: Sequence[int] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s = {interval_s}; must be > 0 seconds")
        self.interval_s = float(interval_s)
        self.clock = clock
        self._nvml, self._handles, self.reason = open_nvml(nvml, devices)
        self._unsupported: set[tuple[int, str]] = set()
        self.idle_watts: float | None = None
        self.idle_gpu_watts: list[float | None] = []
        self.idle_window_s: float | None = None
        self.gpu_info: list[dict[str, Any]] = [self._describe(i, h) for i, h in self._handles]

    @property
    def available(self) -> bool:
        return self._nvml is not None

    @property
    def num_gpus(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        if self._nvml is not None:
            _shutdown(self._nvml)
            self._nvml, self._handles = None, []
            self.reason = "sampler closed"

    def __enter__(self) -> NvmlSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------
    def _call(self, gpu: int, field: str, fn: Callable[[], Any]) -> Any:
        """One NVML query, None on failure. A field the GPU does not support (NotSupported,
        NoPermission, FunctionNotFound) is not asked again; other errors affect that reading only."""
        if (gpu, field) in self._unsupported:
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - an unsupported field is None, not a failed run
            if any(k in type(exc).__name__ for k in _PERMANENT_ERRORS):
                self._unsupported.add((gpu, field))
            return None

    def _describe(self, index: int, handle: Any) -> dict[str, Any]:
        nv = self._nvml
        name = self._call(index, "name", lambda: _text(nv.nvmlDeviceGetName(handle)))
        uuid = self._call(index, "uuid", lambda: _text(nv.nvmlDeviceGetUUID(handle)))
        return {"index": index, "name": name, "uuid": uuid}

    def _read_gpu(self, gpu: int, handle: Any) -> GpuReading:
        nv = self._nvml
        power_mw = self._call(gpu, "power", lambda: nv.nvmlDeviceGetPowerUsage(handle))
        energy = self._call(gpu, "energy", lambda: int(nv.nvmlDeviceGetTotalEnergyConsumption(handle)))
        mem = self._call(gpu, "memory", lambda: int(nv.nvmlDeviceGetMemoryInfo(handle).used))
        util = self._call(gpu, "utilization", lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu))
        clock = self._call(gpu, "sm_clock", lambda: float(nv.nvmlDeviceGetClockInfo(handle, _NVML_CLOCK_SM)))
        temp = self._call(
            gpu, "temperature", lambda: float(nv.nvmlDeviceGetTemperature(handle, _NVML_TEMPERATURE_GPU))
        )
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        throttle = self._call(gpu, "throttle", lambda: int(reasons_fn(handle))) if reasons_fn else None
        return GpuReading(
            power_w=None if power_mw is None else power_mw / 1000.0,
            energy_mj=energy,
            memory_used_bytes=mem,
            utilization_pct=util,
            sm_clock_mhz=clock,
            temperature_c=temp,
            throttle_mask=throttle,
        )

    def read(self) -> Reading:
        """Every GPU now; an empty reading when NVML is unavailable."""
        t = self.clock()
        return Reading(t, tuple(self._read_gpu(i, h) for i, h in self._handles))

    # --- windows -------------------------------------------------------------------------------
    def window(self, background: bool = True) -> EnergyWindow:
        """A context manager that samples from entry to exit (a background thread if asked)."""
        return EnergyWindow(self, background=background)

    def measure_idle(self, seconds: float = 1.0) -> float | None:
        """Mean total power (W) over ``seconds`` of doing nothing; stored for net energy. None if absent.

        Run it before the measured window, with the model already built, so the baseline includes
        the memory the run keeps allocated but none of its compute.
        """
        if not self.available:
            return None
        with self.window() as w:
            time.sleep(seconds)
        s = w.summary()
        self.idle_window_s = s["window_s"]
        self.idle_gpu_watts = [g["mean_watts"] for g in s["gpus"]]
        self.idle_watts = s["mean_watts"]
        return self.idle_watts


class EnergyWindow:
    """Readings from ``__enter__`` to ``__exit__``; ``summary()`` turns them into the energy record."""

    def __init__(self, sampler: NvmlSampler, background: bool = True) -> None:
        self.sampler = sampler
        self.background = background
        self.readings: list[Reading] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0  # background wake-ups, counted even without NVML
        self.thread_cpu_s = 0.0  # CPU time the sampler thread itself used: its direct overhead
        self.closed = False

    @property
    def n_samples(self) -> int:
        with self._lock:
            return len(self.readings)

    def sample(self) -> None:
        """Take one reading now (the background thread calls this; tests may call it by hand)."""
        r = self.sampler.read()
        with self._lock:
            self.readings.append(r)

    def _run(self) -> None:
        c0 = time.thread_time()
        while not self._stop.wait(self.sampler.interval_s):
            self.ticks += 1
            if self.sampler.available:
                self.sample()
        self.thread_cpu_s = time.thread_time() - c0

    def __enter__(self) -> EnergyWindow:
        self.sample()
        if self.background:
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self.closed = True

    @property
    def window_s(self) -> float | None:
        with self._lock:
            if len(self.readings) < 2:
                return None
            return self.readings[-1].t - self.readings[0].t

    # --- summary -------------------------------------------------------------------------------
    def summary(self, samples: int | None = None) -> dict[str, Any]:
        """The record's "energy" section; ``samples`` (items processed) gives joules per 1k samples."""
        s = self.sampler
        if not s.available:
            return null_summary(s.reason or "NVML unavailable")
        with self._lock:
            readings = list(self.readings)
        if len(readings) < 2:
            return null_summary("window not finished: fewer than two NVML readings")
        window_s = readings[-1].t - readings[0].t
        times = [r.t for r in readings]
        gpus = [self._gpu_summary(g, times, [r.gpus[g] for r in readings], window_s) for g in range(s.num_gpus)]

        methods = {g["method"] for g in gpus}
        joules = None if any(g["joules"] is None for g in gpus) else sum(g["joules"] for g in gpus)
        powers = [[r.gpus[g].power_w for g in range(s.num_gpus)] for r in readings]
        totals = [sum(p) for p in powers if all(x is not None for x in p)]
        mems = [[r.gpus[g].memory_used_bytes for g in range(s.num_gpus)] for r in readings]
        mem_totals = [sum(m) for m in mems if all(x is not None for x in m)]
        idle = s.idle_watts
        joules_net = None if joules is None or idle is None else joules - idle * window_s
        reasons = [f"GPU {g['index']}: {g['reason']}" for g in gpus if g["reason"]]
        return {
            "joules": joules,
            "joules_net": joules_net,
            "joules_per_1k_samples": _per_1k(joules, samples),
            "joules_net_per_1k_samples": _per_1k(joules_net, samples),
            "mean_watts": None if joules is None or window_s <= 0 else joules / window_s,
            "peak_watts": max(totals) if totals else None,
            "idle_watts": idle,
            "peak_device_memory_bytes": max(mem_totals) if mem_totals else None,
            "method": methods.pop() if len(methods) == 1 else "mixed",
            "sample_interval_s": s.interval_s if self.background else None,
            "window_s": window_s,
            "n_samples": len(readings),
            "short_window": window_s < COUNTER_UPDATE_PERIOD_S,
            "gpus": gpus,
            "reason": "; ".join(reasons) if reasons else None,
        }

    def peak_device_memory(self) -> int | None:
        """Largest total NVML memory used (bytes, all sampled GPUs) seen in the window."""
        return self.summary()["peak_device_memory_bytes"]

    def _gpu_summary(self, g: int, times: list[float], rs: list[GpuReading], window_s: float) -> dict[str, Any]:
        s = self.sampler
        info = s.gpu_info[g]
        energies = [r.energy_mj for r in rs]
        powers = [r.power_w for r in rs]
        sampled = trapezoid_joules(times, powers) if all(p is not None for p in powers) else None
        resets = 0
        if all(e is not None for e in energies):
            mj = 0.0
            for prev, cur in zip(energies, energies[1:], strict=False):
                d, reset = counter_delta_mj(prev, cur)
                mj += d
                resets += reset
            joules, method = mj / 1000.0, "counter"
        else:
            joules, method = sampled, "sampled"
        reason = None if joules is not None else "energy counter and power reading both not supported here"
        idle = s.idle_gpu_watts[g] if g < len(s.idle_gpu_watts) else None
        known_powers = [p for p in powers if p is not None]
        utils = [r.utilization_pct for r in rs if r.utilization_pct is not None]
        clocks = [r.sm_clock_mhz for r in rs if r.sm_clock_mhz is not None]
        temps = [r.temperature_c for r in rs if r.temperature_c is not None]
        mems = [r.memory_used_bytes for r in rs if r.memory_used_bytes is not None]
        masks = [r.throttle_mask for r in rs if r.throttle_mask is not None]
        mask = 0
        for m in masks:
            mask |= m
        return {
            **info,
            "joules": joules,
            "joules_sampled": sampled,  # the trapezoid estimate, kept beside the counter as a check
            "joules_net": None if joules is None or idle is None else joules - idle * window_s,
            "method": method,
            "counter_resets": resets,
            "mean_watts": None if joules is None or window_s <= 0 else joules / window_s,
            "peak_watts": max(known_powers) if known_powers else None,
            "idle_watts": idle,
            "peak_memory_used_bytes": max(mems) if mems else None,
            "mean_utilization_pct": statistics.fmean(utils) if utils else None,
            "mean_sm_clock_mhz": statistics.fmean(clocks) if clocks else None,
            "max_sm_clock_mhz": max(clocks) if clocks else None,
            "max_temperature_c": max(temps) if temps else None,
            "throttle_reasons": decode_throttle(mask) if masks else None,
            "reason": reason,
        }


def _per_1k(joules: float | None, samples: int | None) -> float | None:
    if joules is None or not samples:
        return None
    return joules * 1000.0 / samples


def sampler_overhead(
    fn: Callable[[], Any],
    repeats: int = 5,
    interval_s: float = 0.05,
    nvml: Any | None = None,
    sampler: NvmlSampler | None = None,
) -> dict[str, Any]:
    """Cost of sampling: time ``fn()`` with the sampler off and on, interleaved, ``repeats`` times each.

    Interleaving (off, on, on, off, ...) spreads slow drifts (thermal, other tenants) over both arms.
    Medians are compared; ``overhead_pct`` is (on - off) / off. Also reported: the CPU time the
    sampler thread itself used (``thread_cpu_s``, ``thread_cpu_fraction`` of the window) and the
    cost of one ``read()``, which stay meaningful when the wall-time difference drowns in noise.
    Without NVML the thread still wakes every ``interval_s`` (no reads),
    so the figure is the thread's cost alone: ``nvml_available`` says which was measured.
    """
    if repeats < 1:
        raise ValueError(f"repeats = {repeats}; must be >= 1")
    own = sampler is None
    sampler = sampler or NvmlSampler(interval_s=interval_s, nvml=nvml)
    try:
        off: list[float] = []
        on: list[float] = []
        n_samples: list[int] = []
        thread_cpu: list[float] = []
        for r in range(repeats):
            arms = ("off", "on") if r % 2 == 0 else ("on", "off")
            for arm in arms:
                if arm == "off":
                    t0 = time.perf_counter()
                    fn()
                    off.append(time.perf_counter() - t0)
                else:
                    with sampler.window() as w:
                        t0 = time.perf_counter()
                        fn()
                        on.append(time.perf_counter() - t0)
                    n_samples.append(w.n_samples if sampler.available else w.ticks)
                    thread_cpu.append(w.thread_cpu_s)
        reads = []
        for _ in range(10):
            t0 = time.perf_counter()
            sampler.read()
            reads.append(time.perf_counter() - t0)
        off_s, on_s = statistics.median(off), statistics.median(on)
        return {
            "off_s": off_s,
            "on_s": on_s,
            "overhead_pct": (on_s - off_s) / off_s * 100.0 if off_s > 0 else None,
            "read_cost_s": statistics.median(reads),
            # The thread's own CPU seconds per second of window: robust to a noisy, shared machine,
            # where the on/off wall-time difference is often smaller than the run-to-run noise.
            "thread_cpu_s": statistics.median(thread_cpu),
            "thread_cpu_fraction": statistics.median(thread_cpu) / on_s if on_s > 0 else None,
            "samples_per_window": statistics.fmean(n_samples),
            "repeats": repeats,
            "interval_s": sampler.interval_s,
            "nvml_available": sampler.available,
            "reason": sampler.reason,
        }
    finally:
        if own:
            sampler.close()
