"""NVML sampler logic against a scripted fake pynvml: no GPU needed."""

from __future__ import annotations

import time

import pytest

from recsys_impls.measure.fake_nvml import (
    FakeClock,
    FakeGpu,
    FakeNvml,
    NVMLError_LibraryNotFound,
    NVMLError_NoPermission,
)
from recsys_impls.measure.nvml import (
    COUNTER_UPDATE_PERIOD_S,
    NVML_COUNTER_MAX,
    SUMMARY_KEYS,
    NvmlSampler,
    counter_delta_mj,
    decode_throttle,
    sampler_overhead,
    trapezoid_joules,
)

NUMERIC = ("joules", "joules_net", "joules_per_1k_samples", "mean_watts", "peak_watts", "idle_watts",
           "peak_device_memory_bytes", "window_s", "sample_interval_s")


def manual_window(sampler: NvmlSampler, extra_samples: int) -> dict:
    """Enter, take ``extra_samples`` readings by hand, exit: 2 + extra_samples readings."""
    with sampler.window(background=False) as w:
        for _ in range(extra_samples):
            w.sample()
    return w


def test_trapezoid_on_known_samples() -> None:
    assert trapezoid_joules([0, 1, 3], [100, 200, 0]) == pytest.approx(150 + 200)
    assert trapezoid_joules([5.0], [300.0]) == 0.0
    with pytest.raises(ValueError):
        trapezoid_joules([0, 1], [1.0])


def test_sampled_energy_integrates_power_with_trapezoid_rule() -> None:
    gpu = FakeGpu(power_mw=[100_000, 200_000, 200_000, 100_000], energy_mj=None)
    s = NvmlSampler(nvml=FakeNvml([gpu]), clock=FakeClock([0.0, 1.0, 2.0, 3.0]))
    w = manual_window(s, 2)
    out = w.summary(samples=2000)
    assert out["method"] == "sampled"
    assert out["joules"] == pytest.approx(150 + 200 + 150)
    assert out["window_s"] == pytest.approx(3.0)
    assert out["mean_watts"] == pytest.approx(500 / 3)
    assert out["peak_watts"] == pytest.approx(200)
    assert out["joules_per_1k_samples"] == pytest.approx(250)
    assert out["short_window"] is False
    assert out["sample_interval_s"] is None  # sampled by hand, not by the thread
    assert out["n_samples"] == 4
    assert out["reason"] is None
    assert out["joules_net"] is None and out["idle_watts"] is None  # idle never measured
    assert set(out) == set(SUMMARY_KEYS)


def test_counter_energy_preferred_over_power() -> None:
    gpu = FakeGpu(power_mw=[999_000], energy_mj=[1_000, 3_000, 6_000])
    s = NvmlSampler(nvml=FakeNvml([gpu]), clock=FakeClock([0.0, 1.0, 2.0]))
    out = manual_window(s, 1).summary()
    assert out["method"] == "counter"
    assert out["joules"] == pytest.approx(5.0)
    assert out["gpus"][0]["joules_sampled"] == pytest.approx(999 * 2)  # kept beside as a check
    assert out["mean_watts"] == pytest.approx(2.5)


def test_counter_reset_counts_only_energy_since_reset() -> None:
    gpu = FakeGpu(energy_mj=[10_000, 12_000, 500, 1_500])
    s = NvmlSampler(nvml=FakeNvml([gpu]), clock=FakeClock([0.0, 1.0, 2.0, 3.0]))
    out = manual_window(s, 2).summary()
    assert out["joules"] == pytest.approx((2_000 + 500 + 1_000) / 1000)
    assert out["gpus"][0]["counter_resets"] == 1


def test_counter_wrap_at_64_bits() -> None:
    assert counter_delta_mj(NVML_COUNTER_MAX - 1_000, 500) == (1_500.0, False)
    assert counter_delta_mj(5_000, 200) == (200.0, True)
    assert counter_delta_mj(5, 7) == (2.0, False)
    gpu = FakeGpu(energy_mj=[NVML_COUNTER_MAX - 1_000, 500])
    out = manual_window(NvmlSampler(nvml=FakeNvml([gpu]), clock=FakeClock([0.0, 1.0])), 0).summary()
    assert out["joules"] == pytest.approx(1.5)
    assert out["gpus"][0]["counter_resets"] == 0


@pytest.mark.parametrize(
    ("length", "short"), [(COUNTER_UPDATE_PERIOD_S / 2, True), (COUNTER_UPDATE_PERIOD_S * 5, False)]
)
def test_short_window_flag(length: float, short: bool) -> None:
    gpu = FakeGpu(energy_mj=[0, 10])
    s = NvmlSampler(nvml=FakeNvml([gpu]), clock=FakeClock([100.0, 100.0 + length]))
    assert manual_window(s, 0).summary()["short_window"] is short


def test_idle_power_is_subtracted() -> None:
    # Idle: 100 J over 2 s = 50 W. Window: 1000 J over 10 s, net 1000 - 50 * 10 = 500 J.
    gpu = FakeGpu(energy_mj=[0, 100_000, 100_000, 1_100_000])
    clock = FakeClock([0.0, 2.0, 10.0, 20.0])
    s = NvmlSampler(interval_s=1000.0, nvml=FakeNvml([gpu]), clock=clock)  # the thread never ticks
    assert s.measure_idle(seconds=0.0) == pytest.approx(50.0)
    out = manual_window(s, 0).summary(samples=10_000)
    assert out["idle_watts"] == pytest.approx(50.0)
    assert out["joules"] == pytest.approx(1000.0)
    assert out["joules_net"] == pytest.approx(500.0)
    assert out["joules_net_per_1k_samples"] == pytest.approx(50.0)
    assert out["gpus"][0]["joules_net"] == pytest.approx(500.0)


def test_two_gpus_are_summed_and_described() -> None:
    gpus = [
        FakeGpu(power_mw=[100_000], energy_mj=[0, 1_000], memory_used=[1 << 30, 3 << 30], uuid="GPU-a"),
        FakeGpu(power_mw=[200_000], energy_mj=[0, 3_000], memory_used=[2 << 30, 1 << 30], uuid="GPU-b",
                throttle=[0x1, 0x4], temperature=[50, 70], sm_clock=[1000, 1800], utilization=[20, 80]),
    ]
    s = NvmlSampler(nvml=FakeNvml(gpus), clock=FakeClock([0.0, 1.0]))
    w = manual_window(s, 0)
    out = w.summary()
    assert out["joules"] == pytest.approx(4.0)
    assert out["peak_watts"] == pytest.approx(300.0)
    assert out["peak_device_memory_bytes"] == 4 << 30  # max over time of the total, not a sum of maxima
    assert w.peak_device_memory() == 4 << 30
    b = out["gpus"][1]
    assert b["uuid"] == "GPU-b" and b["name"] == "NVIDIA H100 80GB HBM3"
    assert b["throttle_reasons"] == ["gpu_idle", "sw_power_cap"]
    assert b["max_temperature_c"] == 70 and b["max_sm_clock_mhz"] == 1800
    assert b["mean_utilization_pct"] == pytest.approx(50.0)
    assert b["peak_memory_used_bytes"] == 2 << 30


def test_cuda_visible_devices_limits_the_gpus_charged(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu(energy_mj=[0, 1_000], uuid="GPU-aaaa"), FakeGpu(energy_mj=[0, 7_000], uuid="GPU-bbbb")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    s = NvmlSampler(nvml=FakeNvml(gpus), clock=FakeClock([0.0, 1.0]))
    assert [g["uuid"] for g in s.gpu_info] == ["GPU-bbbb"]
    assert manual_window(s, 0).summary()["joules"] == pytest.approx(7.0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    assert [g["index"] for g in NvmlSampler(nvml=FakeNvml(gpus)).gpu_info] == [0]


def test_unsupported_fields_fall_back_and_reason() -> None:
    class NoPower(FakeNvml):
        def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:  # noqa: N802
            raise self.NVMLError_NotSupported()

    s = NvmlSampler(nvml=NoPower([FakeGpu(energy_mj=None)]), clock=FakeClock([0.0, 1.0]))
    out = manual_window(s, 0).summary()
    assert out["joules"] is None and out["peak_watts"] is None
    assert "not supported" in out["reason"]


def test_decode_throttle() -> None:
    assert decode_throttle(0) == []
    assert decode_throttle(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle(0x1000) == ["other_0x1000"]


def _assert_null(out: dict, fragment: str) -> None:
    assert fragment.lower() in out["reason"].lower()
    for key in NUMERIC:
        assert out[key] is None, key
    assert out["gpus"] == [] and out["method"] is None and out["short_window"] is None


@pytest.mark.parametrize(
    ("nvml", "fragment"),
    [
        (FakeNvml(init_error=NVMLError_LibraryNotFound()), "NVMLError_LibraryNotFound"),
        (FakeNvml(init_error=NVMLError_NoPermission()), "permission"),
        (FakeNvml(gpus=[]), "no NVIDIA device"),
    ],
)
def test_null_paths_never_raise(nvml: FakeNvml, fragment: str) -> None:
    s = NvmlSampler(nvml=nvml)
    assert not s.available and fragment.lower() in s.reason.lower()
    assert s.measure_idle(seconds=0.0) is None
    with s.window() as w:
        pass
    _assert_null(w.summary(samples=100), fragment)
    assert w.peak_device_memory() is None


def test_nvml_is_shut_down_on_close() -> None:
    nv = FakeNvml([FakeGpu()])
    with NvmlSampler(nvml=nv) as s:
        assert s.available
    assert nv.inits == nv.shutdowns == 1
    nv0 = FakeNvml(gpus=[])
    NvmlSampler(nvml=nv0)
    assert nv0.inits == nv0.shutdowns == 1  # a failed open releases the library too


def test_real_pynvml_without_gpu_gives_reason() -> None:
    s = NvmlSampler()
    if s.available:
        pytest.skip("this machine has an NVIDIA GPU")
    assert s.reason
    with s.window() as w:
        pass
    assert w.summary()["joules"] is None


def test_background_thread_samples() -> None:
    s = NvmlSampler(interval_s=0.005, nvml=FakeNvml([FakeGpu(energy_mj=list(range(0, 10**6, 10)))]))
    with s.window() as w:
        deadline = time.monotonic() + 10
        while w.n_samples < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    out = w.summary()
    assert out["n_samples"] >= 5
    assert out["sample_interval_s"] == 0.005
    assert out["method"] == "counter" and out["joules"] > 0


def test_sampler_overhead_runs_with_and_without_nvml() -> None:
    calls = []
    res = sampler_overhead(lambda: calls.append(1), repeats=3, interval_s=0.01, nvml=FakeNvml(gpus=[]))
    assert len(calls) == 6
    assert res["nvml_available"] is False and res["reason"]
    assert res["off_s"] >= 0 and res["on_s"] >= 0 and res["read_cost_s"] >= 0
    res = sampler_overhead(lambda: None, repeats=2, interval_s=0.01, nvml=FakeNvml([FakeGpu(energy_mj=[0])]))
    assert res["nvml_available"] is True and res["samples_per_window"] >= 2
    assert res["thread_cpu_s"] >= 0 and res["thread_cpu_fraction"] >= 0
    with pytest.raises(ValueError):
        sampler_overhead(lambda: None, repeats=0)


def test_bad_interval_rejected() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        NvmlSampler(interval_s=0)
