"""Machine peaks: the per-machine cache, refresh, the CLI's error paths, the shared timing helpers, and one
tiny real PyTorch measurement."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from recsys_impls.errors import UsageError
from recsys_impls.measure import peakcore, peaks


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple]:
    """Replace the framework measurement with a counter; machine 'testbox', cache in tmp_path."""
    calls: list[tuple] = []

    def measure(framework: str, device: str, threads: int | None) -> dict:
        calls.append((framework, device, threads))
        return {"framework": framework, "device": device, "threads": threads or 2, "mem_copy_bytes_per_s": 1e10,
                "mem_triad_bytes_per_s": 1.2e10, "gemm_fp32_flops_per_s": 1e11, "gemm_bf16_flops_per_s": 2e11,
                "gemm_tf32_flops_per_s": None, "n": len(calls)}

    monkeypatch.setattr(peaks, "measure", measure)
    monkeypatch.setenv("RECSYS_MACHINE", "testbox")
    monkeypatch.setenv("RECSYS_PEAKS_DIR", str(tmp_path))
    monkeypatch.delenv(peakcore.QUICK_ENV, raising=False)
    return calls


def test_cache_round_trip(fake: list, tmp_path: Path) -> None:
    first = peaks.machine_peaks("torch", threads=1)
    assert fake == [("torch", "cpu", 1)]
    path = tmp_path / "peaks-testbox.json"
    stored = json.loads(path.read_text())
    assert stored["machine"] == "testbox"
    assert stored["entries"]["torch/cpu/1"]["mem_triad_bytes_per_s"] == 1.2e10
    again = peaks.machine_peaks("torch", threads=1)
    assert len(fake) == 1 and again == first  # from the cache
    peaks.machine_peaks("torch", threads=2)
    peaks.machine_peaks("tf")
    assert len(fake) == 3
    assert set(json.loads(path.read_text())["entries"]) == {"torch/cpu/1", "torch/cpu/2", "tf/cpu/default"}


def test_quick_and_full_entries_never_stand_in_for_each_other(fake: list, monkeypatch: pytest.MonkeyPatch) -> None:
    real_measure = peaks.measure

    def measure(framework: str, device: str, threads: int | None) -> dict:
        return {**real_measure(framework, device, threads), "quick": peakcore.quick_mode()}

    monkeypatch.setattr(peaks, "measure", measure)
    monkeypatch.setenv(peakcore.QUICK_ENV, "1")
    assert peaks.machine_peaks("torch", threads=1)["quick"] is True
    assert peaks.machine_peaks("torch", threads=1)["quick"] is True and len(fake) == 1  # cached
    monkeypatch.delenv(peakcore.QUICK_ENV)
    assert peaks.machine_peaks("torch", threads=1)["quick"] is False and len(fake) == 2  # measured again


def test_refresh_measures_again(fake: list) -> None:
    peaks.machine_peaks("torch", threads=1)
    fresh = peaks.machine_peaks("torch", threads=1, refresh=True)
    assert len(fake) == 2 and fresh["n"] == 2
    assert peaks.machine_peaks("torch", threads=1)["n"] == 2


def test_framework_upgrade_invalidates(fake: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peaks, "package_version", lambda fw: "1.0")
    peaks.machine_peaks("torch", threads=1)
    monkeypatch.setattr(peaks, "package_version", lambda fw: "2.0")
    assert peaks.machine_peaks("torch", threads=1)["package_version"] == "2.0"
    assert len(fake) == 2


def test_file_is_per_machine(fake: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    peaks.machine_peaks("torch", threads=1)
    monkeypatch.setenv("RECSYS_MACHINE", "otherbox")
    peaks.machine_peaks("torch", threads=1)
    assert len(fake) == 2
    assert sorted(p.name for p in tmp_path.glob("peaks-*.json")) == ["peaks-otherbox.json", "peaks-testbox.json"]


def test_machine_name_from_fingerprint(fake: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import recsys_impls.measure.fingerprint as fp

    monkeypatch.delenv("RECSYS_MACHINE")
    monkeypatch.setattr(fp, "machine_name", lambda: "node7-h100")
    other = tmp_path / "elsewhere"
    peaks.machine_peaks("torch", threads=1, cache_dir=other)
    assert (other / "peaks-node7-h100.json").is_file()


def test_corrupt_cache_is_remeasured(fake: list, tmp_path: Path) -> None:
    (tmp_path / "peaks-testbox.json").write_text("{not json")
    peaks.machine_peaks("torch", threads=1)
    assert len(fake) == 1 and "torch/cpu/1" in json.loads((tmp_path / "peaks-testbox.json").read_text())["entries"]


def test_refresh_all_validates_first(fake: list) -> None:
    with pytest.raises(UsageError, match="jax"):
        peaks.refresh_all(["torch", "jax"], [1])
    assert fake == []
    out = peaks.refresh_all(["torch", "tf"], [1, 2])
    assert [e["key"] for e in out] == ["torch/cpu/1", "torch/cpu/2", "tf/cpu/1", "tf/cpu/2"]


@pytest.mark.parametrize("argv", [["--framework", "jax"], ["--threads", "two"], ["--threads", "1,"], ["--bogus"],
                                  ["--device", "tpu"], ["--framework", "tf", "--device", "cuda"], ["--framework", ""]])
def test_cli_bad_input_exit_2(fake: list, capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    assert peaks.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert fake == []


def test_cli_prints_the_table(fake: list, capsys: pytest.CaptureFixture) -> None:
    assert peaks.main(["--refresh", "--framework", "torch,tf", "--threads", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "triad GB/s" in out and "torch/cpu/2" in out and "tf/cpu/1" in out and "12.0" in out
    assert len(fake) == 4
    assert peaks.main(["--framework", "torch", "--threads", "1"]) == 0  # cached: no new measurement
    assert len(fake) == 4


def test_parse_size_and_array_bytes() -> None:
    assert peakcore.parse_size("32768K\n") == 32 << 20
    assert peakcore.parse_size("2 MiB") == 2 << 20
    assert peakcore.parse_size("junk") is None
    assert peakcore.stream_array_bytes(32 << 20) == 128 << 20
    assert peakcore.stream_array_bytes(None) == (256 << 20) // 3 // 4096 * 4096
    assert peakcore.stream_array_bytes(1 << 30, ceiling=1 << 30) == 1 << 30
    assert peakcore.stream_array_bytes(1 << 10, floor=1 << 20) == 1 << 20


def test_llc_sums_distinct_instances(tmp_path: Path) -> None:
    def cache(cpu: int, index: int, level: int, kind: str, size: str, shared: str) -> None:
        d = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
        d.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (d / name).write_text(f"{value}\n")

    for cpu in range(4):
        cache(cpu, 0, 1, "Data", "32K", str(cpu))
        cache(cpu, 1, 1, "Instruction", "32K", str(cpu))
        cache(cpu, 3, 3, "Unified", "16384K", "0-1" if cpu < 2 else "2-3")
    assert peakcore.llc_bytes(tmp_path) == 2 * (16 << 20)


def test_timed_rate_best_and_median() -> None:
    calls = []
    out = peakcore.timed_rate(lambda: calls.append(1), 10.0, lambda: None, repeats=3, min_sample_s=0.0)
    assert out["samples"] == 3 and out["calls_per_sample"] == 1 and len(calls) == 2 + 3
    assert out["best"] >= out["median"] > 0


def test_real_torch_measurement_tiny() -> None:
    torch = pytest.importorskip("torch")
    from recsys_impls.torch_impl.peaks import measure

    before = torch.get_num_threads()
    e = measure(threads=1, array_bytes=1 << 20, gemm_sizes=(64, 128), repeats=2, min_sample_s=0.001)
    assert torch.get_num_threads() == before
    assert e["threads"] == 1 and e["device"] == "cpu" and e["framework"] == "torch"
    assert e["array_bytes"] == 1 << 20 and e["gemm_n"]["fp32"] in (64, 128)
    for key in ("mem_copy_bytes_per_s", "mem_triad_bytes_per_s", "gemm_fp32_flops_per_s", "gemm_bf16_flops_per_s"):
        assert math.isfinite(e[key]) and e[key] > 0
        assert 0 < e["median"][key] <= e[key]
    assert e["gemm_tf32_flops_per_s"] is None


def test_torch_cuda_without_gpu_is_unsupported() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from recsys_impls.errors import ScenarioUnsupported
    from recsys_impls.torch_impl.peaks import measure

    with pytest.raises(ScenarioUnsupported, match="no CUDA"):
        measure(device="cuda")


def test_gemm_size_search_stops_early_for_a_slow_dtype():
    """A kernel without native support (bf16 on an AVX2-only CPU) must not be timed at n = 2048 for minutes:
    the search stops where the next size's call would pass max_call_s; a fast kernel still reaches n_max."""
    made = []

    def make(seconds_at_256):
        def build(n):
            made.append(n)
            return lambda: time.sleep(seconds_at_256 * (n / 256) ** 3)
        return build

    slow = peakcore.gemm_rate(make(0.01), lambda: None, (2048, 4096), repeats=1, min_sample_s=0.001,
                              max_call_s=0.05)
    assert slow["n"] == 256 and made == [256]
    made.clear()
    fast = peakcore.gemm_rate(make(0.0), lambda: None, (2048, 4096), repeats=1, min_sample_s=0.001)
    assert fast["n"] == 4096 and made == [256, 512, 1024, 2048, 4096]
