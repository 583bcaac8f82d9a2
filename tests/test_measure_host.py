"""Host figures: peak RSS, CPU time, and RAPL against a fake powercap tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys_impls.measure import host
from recsys_impls.measure.host import RaplReader, counter_delta, cpu_energy_window, host_window


def test_peak_rss_covers_a_touched_allocation() -> None:
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
    assert host.peak_rss_bytes() >= block.nbytes
    assert host.peak_rss_bytes(children=True) >= 0


def test_rss_now_is_at_most_the_peak() -> None:
    now = host.rss_bytes()
    assert now is not None and 0 < now <= host.peak_rss_bytes()


def test_phase_memory_names_the_phase_where_the_peak_rose(monkeypatch: pytest.MonkeyPatch) -> None:
    # peak so far, then rss, read at the end of each phase: "build" raised the peak, "train" fell back
    readings = iter([100, 90, 300, 280, 300, 120])
    monkeypatch.setattr(host, "peak_rss_bytes", lambda: next(readings))
    monkeypatch.setattr(host, "rss_bytes", lambda: next(readings))
    memory = host.PhaseMemory()
    for name in ("data", "build", "train"):
        memory.enter(name)
    got = memory.section()  # closes "train"
    assert got["rss_peak_phase"] == "build"
    assert got["rss_by_phase"] == {"data": {"peak_so_far_bytes": 100, "end_bytes": 90},
                                   "build": {"peak_so_far_bytes": 300, "end_bytes": 280},
                                   "train": {"peak_so_far_bytes": 300, "end_bytes": 120}}


def test_cpu_time_grows_with_work() -> None:
    t0 = host.cpu_time_s()
    x = 0
    for i in range(300_000):
        x += i * i
    own = host.cpu_time_s()
    assert own > t0
    assert host.cpu_time_s(children=True) >= own  # read after ``own``: this process's part alone can only grow


def make_rapl(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """zones: directory name -> (zone name, energy_uj, max_energy_range_uj)."""
    for d, (name, energy, max_range) in zones.items():
        z = root / d
        z.mkdir(parents=True)
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{energy}\n")
        (z / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def set_energy(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_rapl_sums_packages_and_undoes_wrap(tmp_path: Path) -> None:
    root = make_rapl(tmp_path, {
        "intel-rapl:0": ("package-0", 999_000_000, 1_000_000_000),
        "intel-rapl:0:0": ("core", 5_000_000, 1_000_000_000),
        "intel-rapl:1": ("package-1", 1_000_000, 1_000_000_000),
    })
    reader = RaplReader(root)
    assert reader.available and reader.reason is None
    with cpu_energy_window(reader) as w:
        set_energy(root, "intel-rapl:0", 2_000_000)  # wrapped: 1e6 to the top, then 2e6
        set_energy(root, "intel-rapl:0:0", 6_000_000)
        set_energy(root, "intel-rapl:1", 4_000_000)
    assert w.zones["intel-rapl:0"] == pytest.approx(3.0)
    assert w.zones["intel-rapl:0:0"] == pytest.approx(1.0)
    assert w.joules == pytest.approx(3.0 + 3.0)  # the core sub-zone is inside package-0
    assert w.reason is None and w.mean_watts > 0


def test_counter_delta() -> None:
    assert counter_delta(10, 15, 100) == 5
    assert counter_delta(90, 5, 100) == 15
    assert counter_delta(90, 5, None) == 5  # no range known: a reset


def test_rapl_absent(tmp_path: Path) -> None:
    r = RaplReader(tmp_path / "nope")
    assert not r.available and r.reason.startswith("no RAPL:") and "does not exist" in r.reason
    r = RaplReader(tmp_path)
    assert r.reason == f"no RAPL: {tmp_path} has no intel-rapl zones"
    with cpu_energy_window(r) as w:
        pass
    assert w.joules is None and w.mean_watts is None and w.reason == r.reason


def test_rapl_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_rapl(tmp_path, {"intel-rapl:0": ("package-0", 1, 100)})
    real = Path.read_text

    def deny(self: Path, *a: object, **k: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", deny)
    r = RaplReader(root)
    assert not r.available and "permission denied" in r.reason
    assert host.cpu_energy_status(r) == {"rapl_available": False, "cpu_energy_reason": r.reason}


def test_this_machine_rapl_status_is_consistent() -> None:
    status = host.cpu_energy_status()
    assert status["rapl_available"] == (status["cpu_energy_reason"] is None)


def test_host_window_summary(tmp_path: Path) -> None:
    with host_window(RaplReader(tmp_path)) as h:
        sum(i for i in range(100_000))
    s = h.summary()
    assert s["wall_s"] > 0 and s["cpu_time_s"] >= 0 and s["peak_rss_bytes"] > 0
    assert s["cpu_joules"] is None and "no intel-rapl zones" in s["cpu_joules_reason"]
