"""The GPU suite (benchmarks/bench_gpu.py), its settings table and benchmarks/gpu_check.sh.

CI has no GPU: here the CUDA settings must skip with a reason, cheaply, and the CPU ones must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import bench_gpu
from recsys_impls import benchsupport as bs
from recsys_impls import gpu_settings as gs
from recsys_impls import gpucheck
from recsys_impls.config import DeviceConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
NO_GPU = gs.gpu_absent_reason() is not None
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="this machine has an NVIDIA GPU: the skip path does not apply")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable)
    env.update(extra)
    return env


def test_asv_discovery_imports_neither_torch_nor_tensorflow(tmp_path: Path) -> None:
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    (bench_dir / "__init__.py").write_text("")
    shutil.copy(ROOT / "benchmarks" / "bench_gpu.py", bench_dir / "bench_gpu.py")
    code = textwrap.dedent(f"""
        import sys
        from asv_runner.discovery import disc_benchmarks
        names = [b.name for b in disc_benchmarks({str(bench_dir)!r}, ignore_import_errors=False)]
        heavy = sorted(m for m in ("torch", "tensorflow") if m in sys.modules)
        print(repr((names, heavy)))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(),
                         timeout=120)
    assert res.returncode == 0, res.stderr
    names, heavy = eval(res.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr
    assert heavy == []
    for expected in ("bench_gpu.TrainStep.time_train_step", "bench_gpu.InferBatch.time_infer_batch",
                     "bench_gpu.GpuEnergy.track_train_joules_per_sample", "bench_gpu.GpuMemory.track_peak_device_bytes",
                     "bench_gpu.GpuRun.track_train_seconds_per_sample",
                     "bench_gpu.SamplerOverhead.track_sampler_thread_cpu_fraction"):
        assert expected in names


def test_params_are_fixed_lists_not_machine_dependent() -> None:
    assert bench_gpu.SETTINGS == list(gs.SETTINGS)
    assert bench_gpu.FRAMEWORKS == ["torch", "tf"]
    for cls in (bench_gpu.GpuRun, bench_gpu.GpuEnergy, bench_gpu.GpuMemory):
        assert cls.params == [bench_gpu.FRAMEWORKS, bench_gpu.SETTINGS, bench_gpu.RECORD_MODELS]
    for cls in (bench_gpu.TrainStep, bench_gpu.InferBatch):
        assert cls.params == [bench_gpu.FRAMEWORKS, bench_gpu.SETTINGS, bench_gpu.MODELS]
    assert bench_gpu.MODELS == bs.ranking_models() and {"dlrm", "dcnv2"} <= set(bench_gpu.MODELS)
    assert bench_gpu.RECORD_MODELS == bs.all_models() and {"two-tower", "neumf"} <= set(bench_gpu.RECORD_MODELS)
    for cls in (bench_gpu.GpuEnergy, bench_gpu.GpuMemory):  # one setup_cache, so every pair runs once
        assert cls.setup_cache is bench_gpu.GpuRun.setup_cache
    for cls in (bench_gpu.GpuRun, bench_gpu.GpuEnergy, bench_gpu.GpuMemory, bench_gpu.SamplerOverhead):
        for name in dir(cls):
            if name.startswith("track_"):
                assert getattr(getattr(cls, name), "unit", None), f"{cls.__name__}.{name} has no unit"


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("setting", list(gs.SETTINGS))
def test_every_setting_maps_to_a_valid_scenario(framework: str, setting: str) -> None:
    cfg = gs.device_config(framework, setting)
    assert isinstance(cfg, DeviceConfig)
    cfg.validate()
    if gs.is_gpu(setting):
        assert cfg.device == ("cuda" if framework == "torch" else "GPU:0")
    else:
        assert cfg.device == "cpu"
    scenario = gs.scenario_for_setting(framework, setting)
    assert scenario.framework == framework and scenario.device == cfg
    assert scenario.train.steps == gs.train_for(setting)["steps"]
    assert len(scenario.model.table_sizes) == (8 if gs.preset_for(setting) == "dlrm-ref" else 26)


def test_structural_skips_hold_on_any_machine() -> None:
    assert "TensorFlow" in gs.static_skip_reason("torch", "cuda-xla")
    assert "PyTorch" in gs.static_skip_reason("tf", "cuda-graphs")
    assert "PyTorch" in gs.static_skip_reason("tf", "cuda-compile-max-autotune")
    assert "pinned" in gs.static_skip_reason("tf", "cuda-pinned")
    assert gs.static_skip_reason("torch", "cuda-graphs") is None
    assert gs.static_skip_reason("tf", "cuda-xla") is None
    with pytest.raises(ValueError, match="accepted: cpu-fp32"):
        gs.device_config("torch", "cuda-fp64")


@needs_no_gpu
def test_cuda_settings_skip_with_the_reason_in_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = [s for s in gs.SETTINGS if gs.is_gpu(s)]
    monkeypatch.setattr(bench_gpu, "SETTINGS", cuda)
    records = bench_gpu.GpuRun().setup_cache()  # every pair skips before any framework work
    assert set(records) == {(f, s, m) for f in bench_gpu.FRAMEWORKS for s in cuda for m in bench_gpu.RECORD_MODELS}
    for (framework, setting, model), rec in records.items():
        assert rec["status"] == "skipped" and rec["error"].startswith(setting)
        for cls in (bench_gpu.GpuRun, bench_gpu.GpuEnergy, bench_gpu.GpuMemory):
            with pytest.raises(NotImplementedError, match=setting):
                cls().setup(records, framework, setting, model)
        for cls in (bench_gpu.TrainStep, bench_gpu.InferBatch):
            if model in bench_gpu.MODELS:
                with pytest.raises(NotImplementedError, match="GPU|XLA|PyTorch|pinned"):
                    cls().setup(framework, setting, model)


def test_quick_run_skips_models_other_than_dlrm_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bs.QUICK_ENV, "1")
    monkeypatch.setattr(bench_gpu, "SETTINGS", ["cpu-fp32"])
    others = [m for m in bench_gpu.RECORD_MODELS if m != bs.QUICK_MODEL]
    monkeypatch.setattr(bench_gpu, "RECORD_MODELS", others)
    records = bench_gpu.GpuRun().setup_cache()
    assert set(records) == {(f, "cpu-fp32", m) for f in bench_gpu.FRAMEWORKS for m in others}
    for (framework, setting, model), rec in records.items():
        assert rec["status"] == "skipped" and "quick subset" in rec["error"] and model in rec["error"]
        with pytest.raises(NotImplementedError, match="quick subset"):
            bench_gpu.TrainStep().setup(framework, setting, model)


def test_a_model_scenario_keeps_the_setting_and_takes_the_model_shape() -> None:
    base = gs.scenario_for_setting("torch", "cpu-amp-bf16")
    sc = bs.with_model(base, "dcnv2", gs.preset_for("cpu-amp-bf16"))
    assert sc.model.arch == "dcnv2" and sc.model.cross_rank == bs.MODEL_SHAPE[("dcnv2", "tiny")]["cross_rank"]
    assert sc.device == base.device and sc.train.steps == base.train.steps
    assert sc.model.table_sizes == base.model.table_sizes
    assert bs.with_model(base, "dlrm") is base


def _fake_record(energy: dict | None, peak: int | None) -> dict:
    return {"status": "ok", "throughput": {"train_samples_per_s": 2000.0, "infer_samples_per_s": 8000.0},
            "latency_ms": {"p99": 4.0}, "quality": {"auc": 0.75},
            "memory": {"peak_device_bytes": peak, "peak_device_bytes_reason": None if peak else "device is cpu"},
            "energy": energy if energy is not None else {"joules": None, "reason": "NVMLError_LibraryNotFound"}}


def test_tracks_read_the_record_and_skip_missing_figures() -> None:
    train = {"joules_per_1k_samples": 3.0, "joules_net_per_1k_samples": 1.0, "mean_watts": 250.0,
             "peak_device_memory_bytes": 5 * 2**20, "reason": None}
    key = ("torch", "cuda-fp32", "dlrm")
    ok = {key: _fake_record({"train": train, "infer": dict(train, joules_per_1k_samples=0.5)}, None)}
    run = bench_gpu.GpuRun()
    run.setup(ok, *key)
    assert run.track_train_seconds_per_sample(ok, *key) == pytest.approx(1 / 2000)
    en = bench_gpu.GpuEnergy()
    en.setup(ok, *key)
    assert en.track_train_joules_per_sample(ok, *key) == pytest.approx(0.003)
    assert en.track_infer_joules_per_sample(ok, *key) == pytest.approx(0.0005)
    assert en.track_train_mean_watts(ok, *key) == 250.0
    mem = bench_gpu.GpuMemory()
    mem.setup(ok, *key)  # no allocator figure: NVML's peak is used
    assert mem.track_peak_device_bytes(ok, *key) == 5 * 2**20

    cpu = {key: _fake_record(None, None)}
    with pytest.raises(NotImplementedError, match="NVMLError_LibraryNotFound"):
        bench_gpu.GpuEnergy().setup(cpu, *key)
    with pytest.raises(NotImplementedError, match="device is cpu"):
        bench_gpu.GpuMemory().setup(cpu, *key)


def test_summary_row_reads_gpu_figures_from_a_record() -> None:
    rec = _fake_record({"train": {"joules_per_1k_samples": 3.0, "peak_device_memory_bytes": None}}, 64 * 2**20)
    row = gpucheck.row_of("torch-cuda-fp32", "ok", rec)
    assert row["J/1k samples"] == 3.0 and row["peak device MiB"] == 64.0 and row["AUC"] == 0.75
    text = gpucheck.render_text([row, gpucheck.row_of("tf-cuda-fp32", "skipped", None)])
    assert "torch-cuda-fp32" in text and "2,000" in text and "3.000" in text


@pytest.mark.slow
def test_cpu_setting_runs_end_to_end_in_the_suite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECSYS_MACHINE", "pytest-bench-gpu")
    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))  # records land in tmp_path/.asv/records
    monkeypatch.setattr(bench_gpu, "FRAMEWORKS", ["torch"])
    monkeypatch.setattr(bench_gpu, "SETTINGS", ["cpu-fp32"])
    monkeypatch.setattr(bench_gpu, "MODELS", ["dlrm"])
    monkeypatch.setattr(bench_gpu, "RECORD_MODELS", ["dlrm", "neumf"])
    monkeypatch.setattr(gs, "CPU_TRAIN", dict(gs.CPU_TRAIN, steps=20, eval_samples=2000))
    records = bench_gpu.GpuRun().setup_cache()
    key = ("torch", "cpu-fp32", "dlrm")
    run = bench_gpu.GpuRun()
    run.setup(records, *key)
    assert run.track_train_seconds_per_sample(records, *key) > 0
    retrieval = ("torch", "cpu-fp32", "neumf")  # a retrieval model's record under the same setting
    run.setup(records, *retrieval)
    assert run.track_infer_seconds_per_sample(records, *retrieval) > 0
    assert records[retrieval]["implementation"]["precision"] == "fp32"
    if NO_GPU:
        with pytest.raises(NotImplementedError, match="energy"):
            bench_gpu.GpuEnergy().setup(records, *key)
    step = bench_gpu.TrainStep()
    step.setup(*key)
    step.time_train_step(*key)
    monkeypatch.setattr(bench_gpu, "OVERHEAD_SETTINGS", ["cpu-fp32"])
    over = bench_gpu.SamplerOverhead()
    results = over.setup_cache()
    over.setup(results, *key[:2])
    assert 0 <= over.track_sampler_thread_cpu_fraction(results, *key[:2]) < 1
    assert results[key[:2]]["nvml_available"] is (not NO_GPU)
    saved = list((tmp_path / ".asv" / "records" / "pytest-bench-gpu").rglob("gpu--*.json"))
    assert len(saved) == 2 and {json.loads(f.read_text())["asv"]["params"]["model"] for f in saved} == {"dlrm", "neumf"}


def _run_script(args: list[str], tmp: Path, timeout: int = 420, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp,
                          env=_env(**env), timeout=timeout)


def _status(out: Path) -> dict[str, tuple[str, str]]:
    return {r["name"]: (r["status"], r["reason"]) for r in gpucheck.read_status(out)}


@needs_no_gpu
@pytest.mark.slow
def test_script_runs_cpu_baseline_and_skips_every_gpu_scenario_with_reason(tmp_path: Path) -> None:
    out = tmp_path / "check"
    res = _run_script([str(out)], tmp_path, GPU_CHECK_CPU_STEPS="20", GPU_CHECK_CPU_EVAL="2000")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    status = _status(out)
    assert status["torch-cpu-fp32"][0] == "ok"
    record = json.loads((out / "torch-cpu-fp32.json").read_text())
    assert record["status"] == "ok" and record["scenario"]["device"]["device"] == "cpu"
    gpu_names = [n for n in status if "cuda" in n]
    assert {"torch-cuda-fp32", "torch-cuda-tf32", "torch-cuda-amp-bf16", "torch-cuda-amp-fp16",
            "torch-cuda-graphs", "torch-cuda-compile", "torch-cuda-pinned", "tf-cuda-fp32"} <= set(gpu_names)
    for name in gpu_names:
        state, reason = status[name]
        assert state == "skipped" and reason, name
        assert not (out / f"{name}.json").exists()
    assert "no CUDA device" in status["torch-cuda-fp32"][1] or "not installed" in status["torch-cuda-fp32"][1]
    assert status["profile-torch-cpu-fp32"][0] == "ok"
    assert (out / "profiles" / "torch-cpu-fp32" / "torch_profiler" / "torch_trace.json").is_file()
    assert "train samples/s" in res.stdout and "torch-cpu-fp32" in res.stdout
    assert (out / "summary.md").is_file() and (out / "summary.html").is_file()
    assert "full HTML report" in res.stdout
    if "report not built" not in res.stdout:
        assert (out / "report" / "gpu.html").is_file()


@pytest.mark.slow
def test_script_strict_fails_when_required_scenarios_do_not_run(tmp_path: Path) -> None:
    out = tmp_path / "strict"
    res = _run_script(["--strict", str(out)], tmp_path, timeout=180, GPU_CHECK_DEADLINE="0",
                      GPU_CHECK_FRAMEWORKS="torch")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    status = _status(out)
    assert status["torch-cpu-fp32"][0] == "not-run" and "deadline" in status["torch-cpu-fp32"][1]
    assert status["tf-cuda-fp32"] == ("skipped", "not asked for (GPU_CHECK_FRAMEWORKS=torch)")
    assert "--strict" in res.stdout


def test_script_usage_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    res = _run_script([], tmp_path, timeout=30)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    res = _run_script(["--fast", str(tmp_path / "x")], tmp_path, timeout=30)
    assert res.returncode == 2 and "unknown option --fast" in res.stderr


def test_report_rows_carry_the_training_window_energy() -> None:
    pytest.importorskip("pandas")
    from reports.records import flatten

    rec = _fake_record({"train": {"joules_per_1k_samples": 3.0, "mean_watts": 250.0, "gpus": []},
                        "infer": {"joules_per_1k_samples": 0.5}}, None)
    row = flatten(rec)
    assert row["energy.joules_per_1k_samples"] == 3.0 and row["energy.mean_watts"] == 250.0
    assert row["energy.infer.joules_per_1k_samples"] == 0.5
