"""A scripted stand-in for the ``pynvml`` module, for tests and demos on machines without a GPU.

Pass an instance wherever the suite accepts ``nvml=``. Each GPU replays its scripted sequences,
one value per reading (the last value repeats), so energy integration, counter resets and
unsupported fields can be tested exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    """Base of the fake's errors; the real pynvml names its subclasses the same way."""


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - mirrors pynvml's naming
    def __str__(self) -> str:
        return "NVML Shared Library Not Found"


class NVMLError_NoPermission(NVMLError):  # noqa: N801
    def __str__(self) -> str:
        return "Insufficient Permissions"


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    def __str__(self) -> str:
        return "Not Supported"


@dataclass
class FakeGpu:
    """One scripted GPU. ``energy_mj=None`` means the counter is unsupported (pre-Volta)."""

    power_mw: Sequence[int] = (100_000,)
    energy_mj: Sequence[int] | None = None
    memory_used: Sequence[int] = (1 << 30,)
    memory_total: int = 80 << 30
    utilization: Sequence[int] = (50,)
    sm_clock: Sequence[int] = (1400,)
    temperature: Sequence[int] = (40,)
    throttle: Sequence[int] = (0,)
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    power_limit_mw: int = 700_000
    max_sm_clock: int = 1980
    max_mem_clock: int = 2619
    calls: dict[str, int] = field(default_factory=dict)

    def next(self, key: str, seq: Sequence[int]) -> int:
        i = self.calls.get(key, 0)
        self.calls[key] = i + 1
        return seq[min(i, len(seq) - 1)]


class FakeNvml:
    """The subset of pynvml the suite calls. ``init_error`` makes ``nvmlInit`` raise it."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotSupported = NVMLError_NotSupported

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        init_error: Exception | None = None,
        driver: str = "550.54.15",
        cuda_driver: int = 12040,
    ) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.driver = driver
        self.cuda_driver = cuda_driver
        self.inits = 0
        self.shutdowns = 0

    # --- library ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return self.cuda_driver

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:  # noqa: N802
        return self.gpus[i]

    # --- device facts ----------------------------------------------------------------------
    def nvmlDeviceGetName(self, h: FakeGpu) -> str:  # noqa: N802
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:  # noqa: N802
        return h.uuid

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeGpu) -> int:  # noqa: N802
        return h.power_limit_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:  # noqa: N802
        return h.power_limit_mw

    def nvmlDeviceGetMaxClockInfo(self, h: FakeGpu, clock_type: int) -> int:  # noqa: N802
        return h.max_sm_clock if clock_type == 1 else h.max_mem_clock

    # --- readings --------------------------------------------------------------------------
    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:  # noqa: N802
        return h.next("power", h.power_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:  # noqa: N802
        if h.energy_mj is None:
            raise NVMLError_NotSupported()
        return h.next("energy", h.energy_mj)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:  # noqa: N802
        used = h.next("memory", h.memory_used)
        return SimpleNamespace(used=used, total=h.memory_total, free=h.memory_total - used)

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=h.next("utilization", h.utilization), memory=0)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, clock_type: int) -> int:  # noqa: N802
        return h.next("sm_clock", h.sm_clock)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:  # noqa: N802
        return h.next("temperature", h.temperature)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:  # noqa: N802
        return h.next("throttle", h.throttle)


class FakeClock:
    """A clock that returns scripted times (the last repeats), for exact trapezoid tests."""

    def __init__(self, times: Sequence[float]) -> None:
        self.times = list(times)
        self.i = 0

    def __call__(self) -> float:
        t = self.times[min(self.i, len(self.times) - 1)]
        self.i += 1
        return t
