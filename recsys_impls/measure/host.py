"""Host-side figures: peak resident memory, CPU time and CPU package energy (RAPL).

RAPL is read from the Linux powercap sysfs tree. Its energy counters are in microjoules and wrap at
``max_energy_range_uj``; a reading that goes down is taken as one wrap. Machines without the tree
(most VMs and containers, including CI) or without read permission (``energy_uj`` is root-only
on kernels since 5.10) get ``None`` with the reason, never a zero.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POWERCAP_ROOT = "/sys/class/powercap"


def _status_bytes(field: str, status_path: str = "/proc/self/status") -> int | None:
    """One kB field of /proc's status file (``VmHWM``, ``VmRSS``), in bytes; None where unavailable."""
    try:
        with open(status_path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        return None
    return None


def _vm_hwm_bytes(status_path: str = "/proc/self/status") -> int | None:
    """Peak resident set size ("high water mark") from /proc, in bytes; None where unavailable."""
    return _status_bytes("VmHWM", status_path)


def rss_bytes() -> int | None:
    """Resident memory of this process now (VmRSS), in bytes; None where /proc is unavailable."""
    return _status_bytes("VmRSS")


def peak_rss_bytes(children: bool = False) -> int:
    """Peak resident memory of this process (or of its waited-for children), in bytes.

    ``ru_maxrss`` is KiB on Linux and bytes on macOS. For the process itself the larger of it and
    /proc's VmHWM is returned (they agree on Linux; VmHWM can be reset, ru_maxrss cannot).
    """
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    maxrss = resource.getrusage(who).ru_maxrss
    rss = maxrss if sys.platform == "darwin" else maxrss * 1024
    if not children:
        hwm = _vm_hwm_bytes()
        if hwm is not None:
            rss = max(rss, hwm)
    return int(rss)


def cpu_time_s(children: bool = False) -> float:
    """User + system CPU seconds of this process (all threads), plus waited-for children if asked."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if children:
        cu = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += cu.ru_utime + cu.ru_stime
    return float(total)


@dataclass(frozen=True)
class RaplZone:
    name: str  # e.g. "package-0", "dram"
    path: Path  # the zone directory
    max_range_uj: int | None
    top_level: bool  # a package zone (intel-rapl:N); sub-zones (intel-rapl:N:M) are inside it


class RaplReader:
    """Reads RAPL energy counters; ``available`` is False with ``reason`` set when it cannot.

    Only top-level zones (one per CPU package) are summed into the total, because sub-zones such as
    "core" are already counted inside their package. Sub-zones are reported separately.
    """

    def __init__(self, root: str | os.PathLike[str] = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self.zones: list[RaplZone] = []
        self.reason: str | None = None
        self._discover()

    @property
    def available(self) -> bool:
        return self.reason is None

    def _discover(self) -> None:
        if not self.root.is_dir():
            self.reason = f"no RAPL: {self.root} does not exist"
            return
        dirs = sorted(p for p in self.root.iterdir() if p.name.startswith("intel-rapl:"))
        if not dirs:
            self.reason = f"no RAPL: {self.root} has no intel-rapl zones"
            return
        for d in dirs:
            try:
                name = (d / "name").read_text().strip()
            except OSError:
                name = d.name
            try:
                max_range: int | None = int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                max_range = None
            self.zones.append(RaplZone(name, d, max_range, top_level=d.name.count(":") == 1))
        try:
            self.read()
        except PermissionError as exc:
            self.reason = f"no RAPL: permission denied reading {exc.filename} (root-only on this kernel)"
        except (OSError, ValueError) as exc:
            self.reason = f"no RAPL: cannot read energy_uj: {exc}"

    def read(self) -> dict[str, int]:
        """Current counter of every zone, in microjoules, keyed by zone directory name."""
        return {z.path.name: int((z.path / "energy_uj").read_text()) for z in self.zones}

    def delta_joules(self, start: dict[str, int], end: dict[str, int]) -> dict[str, float]:
        """Joules per zone between two readings, undoing at most one wrap per zone."""
        out = {}
        for z in self.zones:
            out[z.path.name] = counter_delta(start[z.path.name], end[z.path.name], z.max_range_uj) / 1e6
        return out

    def total_joules(self, deltas: dict[str, float]) -> float:
        return float(sum(deltas[z.path.name] for z in self.zones if z.top_level))


def counter_delta(start: int | float, end: int | float, max_range: int | float | None) -> float:
    """Increase of a monotonic counter from ``start`` to ``end``.

    A value that goes down is either a wrap (the counter passed ``max_range`` and restarted at 0:
    add the range) or, where no range is known, a reset (the counter restarted: count ``end``, the
    part since the reset). Both under-count rather than invent energy.
    """
    if end >= start:
        return float(end - start)
    if max_range:
        return float(max_range - start + end)
    return float(end)


@dataclass
class CpuEnergyWindow:
    """What ``cpu_energy_window`` yields; filled in when the ``with`` block ends."""

    joules: float | None = None
    window_s: float | None = None
    zones: dict[str, float] = field(default_factory=dict)
    reason: str | None = None

    @property
    def mean_watts(self) -> float | None:
        if self.joules is None or not self.window_s:
            return None
        return self.joules / self.window_s


@contextmanager
def cpu_energy_window(reader: RaplReader | None = None) -> Iterator[CpuEnergyWindow]:
    """CPU package energy over a ``with`` block (RAPL); ``joules`` None with ``reason`` where absent."""
    reader = reader or RaplReader()
    w = CpuEnergyWindow()
    if not reader.available:
        w.reason = reader.reason
        yield w
        return
    t0 = time.perf_counter()
    start = reader.read()
    try:
        yield w
    finally:
        try:
            end = reader.read()
            w.window_s = time.perf_counter() - t0
            w.zones = reader.delta_joules(start, end)
            w.joules = reader.total_joules(w.zones)
        except OSError as exc:
            w.reason = f"no RAPL: reading failed at the end of the window: {exc}"


@dataclass
class HostWindow:
    """Host figures of one measured window (the record's host part of "memory" and "energy")."""

    wall_s: float | None = None
    cpu_time_s: float | None = None
    peak_rss_bytes: int | None = None
    cpu: CpuEnergyWindow = field(default_factory=CpuEnergyWindow)

    def summary(self) -> dict[str, Any]:
        util = self.cpu_time_s / self.wall_s if self.cpu_time_s is not None and self.wall_s else None
        return {
            "wall_s": self.wall_s,
            "cpu_time_s": self.cpu_time_s,
            "cpu_utilization": util,  # CPU seconds per wall second: 2.0 = two cores busy
            "peak_rss_bytes": self.peak_rss_bytes,
            "cpu_joules": self.cpu.joules,
            "cpu_mean_watts": self.cpu.mean_watts,
            "cpu_joules_reason": self.cpu.reason,
        }


@contextmanager
def host_window(reader: RaplReader | None = None) -> Iterator[HostWindow]:
    """Wall time, CPU time, peak RSS (process lifetime peak at the end) and RAPL energy of a block."""
    h = HostWindow()
    with cpu_energy_window(reader) as cpu:
        h.cpu = cpu
        t0, c0 = time.perf_counter(), cpu_time_s()
        try:
            yield h
        finally:
            h.wall_s = time.perf_counter() - t0
            h.cpu_time_s = cpu_time_s() - c0
            h.peak_rss_bytes = peak_rss_bytes()


def cpu_energy_status(reader: RaplReader | None = None) -> dict[str, Any]:
    """Whether CPU energy can be measured here, for the record: {"rapl_available", "cpu_energy_reason"}.

    The figures themselves come from ``cpu_energy_window`` / ``host_window`` around a timed block.
    """
    reader = reader or RaplReader()
    return {"rapl_available": reader.available, "cpu_energy_reason": reader.reason}


class PhaseMemory:
    """Resident memory at the end of each phase of a process: where its peak RSS was reached.

    The peak is the process's high water mark so far (it is never reset, so ``peak_rss_bytes`` keeps its
    meaning); the phase in which it last rose is ``peak_phase``.
    """

    def __init__(self) -> None:
        self.current: str | None = None
        self.phases: dict[str, dict[str, int | None]] = {}

    def enter(self, name: str) -> None:
        """Close the running phase (its figures are read now) and start ``name``."""
        self.close()
        self.current = name

    def close(self) -> None:
        if self.current is not None:
            self.phases[self.current] = {"peak_so_far_bytes": peak_rss_bytes(), "end_bytes": rss_bytes()}

    def peak_phase(self) -> str | None:
        """The first phase at whose end the peak so far had reached its final value."""
        top = max((p["peak_so_far_bytes"] or 0 for p in self.phases.values()), default=0)
        return next((n for n, p in self.phases.items() if (p["peak_so_far_bytes"] or 0) == top), None)

    def section(self) -> dict[str, Any]:
        """The figures to date (the running phase closed at this moment), for a rank's result."""
        self.close()
        return {"rss_by_phase": dict(self.phases), "rss_peak_phase": self.peak_phase()}
