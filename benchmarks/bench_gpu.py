"""GPU suite: framework x device setting (precision, compilation, CUDA graphs, pinned memory, XLA) x model
(``model`` parameter, from the model registry; a quick run times dlrm only). The record-reading classes
(speed, energy, memory) take every model, retrieval ones included; the per-step timings (TrainStep,
InferBatch) step the ranking models' batches and take those.

Settings are named in recsys_impls/gpu_settings.py (``cuda`` means PyTorch's ``cuda`` and
TensorFlow's ``GPU:0``); CPU settings use the tiny preset, GPU settings the DLRM reference shape.
The parameter lists are fixed: a pair this machine or framework cannot run (no GPU, CUDA graphs on
TensorFlow, XLA on PyTorch, framework not installed) raises NotImplementedError in setup with the
reason, so asv shows it skipped. Nothing heavy at import: frameworks load in setup.

Lower is better everywhere: seconds per sample, joules per sample, bytes, watts. Latency, AUC and
the rest of each run are in its record (.asv/records/<machine>/<commit>/gpu--*.json).
"""

import math

from recsys_impls import benchsupport as bs
from recsys_impls import gpu_settings as gs

FRAMEWORKS = ["torch", "tf"]
SETTINGS = list(gs.SETTINGS)
OVERHEAD_SETTINGS = ["cpu-fp32", "cuda-fp32"]
MODELS = bs.ranking_models()  # from the model registry (numpy-only: no framework imported here)
RECORD_MODELS = bs.all_models()  # the record classes: ranking and retrieval models


def _run_all(self):
    """Run every (framework, setting, model) once; shared by the record-reading classes below."""

    def build(framework, setting, model):
        bs.model_or_skip(model, "device")
        why = gs.skip_reason(framework, setting)
        if why is not None:
            raise NotImplementedError(why)
        return bs.with_model(gs.scenario_for_setting(framework, setting), model, gs.preset_for(setting))

    records = {}
    for framework in FRAMEWORKS:
        combos = [(framework, s, m) for m in RECORD_MODELS for s in SETTINGS]
        records.update(bs.record_grid("gpu", ("framework", "setting", "model"), combos, build))
        _release_device_memory(framework)
    return records


_run_all.timeout = 3600 * len(RECORD_MODELS)


def _release_device_memory(framework):
    """Hand cached GPU memory back between frameworks (both share one process in setup_cache)."""
    import sys

    torch = sys.modules.get("torch")
    if framework == "torch" and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _energy(record, phase):
    """A record's NVML energy section for a phase, or NotImplementedError with the reason."""
    energy = record.get("energy") or {}
    sec = energy.get(phase)
    if not isinstance(sec, dict):
        raise NotImplementedError(f"no energy measured: {energy.get('reason') or 'no NVML section'}")
    return sec


def _finite(value, what, reason):
    """The figure, or a skip of this one track (asv's SkipNotImplemented) saying why it is missing."""
    if value is None or not math.isfinite(value):
        raise bs.skip(f"{what} not measured: {reason or 'no value in the record'}")
    return value


class GpuRun:
    """Training and inference speed per setting, from each pair's record (latency, AUC: in the record)."""

    params = [FRAMEWORKS, SETTINGS, RECORD_MODELS]
    param_names = ["framework", "setting", "model"]
    timeout = 3600
    setup_cache = _run_all

    def setup(self, records, framework, setting, model="dlrm"):
        self.r = bs.require_ok(records.get((framework, setting, model)))

    def track_train_seconds_per_sample(self, records, framework, setting, model="dlrm"):
        return 1.0 / self.r["throughput"]["train_samples_per_s"]

    track_train_seconds_per_sample.unit = "seconds"

    def track_infer_seconds_per_sample(self, records, framework, setting, model="dlrm"):
        return 1.0 / self.r["throughput"]["infer_samples_per_s"]

    track_infer_seconds_per_sample.unit = "seconds"


class GpuEnergy:
    """NVML energy and power of the timed training and inference windows (skipped without NVML)."""

    params = [FRAMEWORKS, SETTINGS, RECORD_MODELS]
    param_names = ["framework", "setting", "model"]
    timeout = 3600
    setup_cache = _run_all

    def setup(self, records, framework, setting, model="dlrm"):
        r = bs.require_ok(records.get((framework, setting, model)))
        self.train = _energy(r, "train")
        self.infer = _energy(r, "infer")

    def track_train_joules_per_sample(self, records, framework, setting, model="dlrm"):
        j = _finite(self.train.get("joules_per_1k_samples"), "train energy", self.train.get("reason"))
        return j / 1000.0

    track_train_joules_per_sample.unit = "joules"

    def track_infer_joules_per_sample(self, records, framework, setting, model="dlrm"):
        j = _finite(self.infer.get("joules_per_1k_samples"), "inference energy", self.infer.get("reason"))
        return j / 1000.0

    track_infer_joules_per_sample.unit = "joules"

    def track_train_mean_watts(self, records, framework, setting, model="dlrm"):
        return _finite(self.train.get("mean_watts"), "mean power", self.train.get("reason"))

    track_train_mean_watts.unit = "watts"


class GpuMemory:
    """Peak device memory: the framework allocator's figure, else NVML's (skipped when neither)."""

    params = [FRAMEWORKS, SETTINGS, RECORD_MODELS]
    param_names = ["framework", "setting", "model"]
    timeout = 3600
    setup_cache = _run_all

    def setup(self, records, framework, setting, model="dlrm"):
        r = bs.require_ok(records.get((framework, setting, model)))
        mem = r.get("memory") or {}
        self.peak = mem.get("peak_device_bytes")
        if self.peak is None:
            energy = r.get("energy") or {}
            train = energy.get("train") if isinstance(energy.get("train"), dict) else {}
            self.peak = train.get("peak_device_memory_bytes")
        if self.peak is None:
            raise NotImplementedError(
                f"peak device memory not measured: {mem.get('peak_device_bytes_reason') or 'no figure'}")

    def track_peak_device_bytes(self, records, framework, setting, model="dlrm"):
        return self.peak

    track_peak_device_bytes.unit = "bytes"


def _timed_fixture(framework, setting, n_batches=8, model="dlrm"):
    """(model, staged batches) for a pair, or NotImplementedError with why it cannot run here."""
    bs.model_or_skip(model, "device")
    why = gs.skip_reason(framework, setting)
    if why is not None:
        raise NotImplementedError(why)
    cfg = gs.device_config(framework, setting)
    batch = gs.train_for(setting)["batch_size"]
    impl, staged, _ = bs.timing_fixture(framework, gs.preset_for(setting), n_batches=n_batches, batch_size=batch,
                                        device=cfg.device, precision=cfg.precision, compile=cfg.compile,
                                        pinned_memory=cfg.pinned_memory, model=model)
    return impl, staged


class TrainStep:
    """One optimizer step per call, device synchronized before the clock is read."""

    params = [FRAMEWORKS, SETTINGS, MODELS]
    param_names = ["framework", "setting", "model"]
    timeout = 900
    rounds = 1  # timing discipline as in bench_core.TrainStep: 10 one-call samples in one process
    repeat = 10
    number = 0  # asv calibrates the calls per sample so one sample lasts sample_time
    sample_time = 0.1
    warmup_time = 1.0

    def setup(self, framework, setting, model="dlrm"):
        self.impl, self.staged = _timed_fixture(framework, setting, model=model)
        if getattr(self, "ready", None) != (framework, setting, model):  # asv re-runs setup before every sample
            for s in self.staged[:3]:  # compile, autotune, graph capture happen here, not in the timing
                self.impl.train_step(s)
            self.impl.synchronize()
            self.i = 0
            self.ready = (framework, setting, model)

    def time_train_step(self, framework, setting, model="dlrm"):
        self.impl.train_step(self.staged[self.i % len(self.staged)])
        self.impl.synchronize()
        self.i += 1


class InferBatch:
    """Inference on one batch per call, device synchronized before the clock is read."""

    params = [FRAMEWORKS, SETTINGS, MODELS]
    param_names = ["framework", "setting", "model"]
    timeout = 900
    rounds = 1
    repeat = 10
    number = 0  # asv calibrates the calls per sample so one sample lasts sample_time
    sample_time = 0.1
    warmup_time = 1.0

    def setup(self, framework, setting, model="dlrm"):
        self.impl, self.staged = _timed_fixture(framework, setting, model=model)
        if getattr(self, "ready", None) != (framework, setting, model):
            for s in self.staged[:3]:
                self.impl.infer(s)
            self.impl.synchronize()
            self.i = 0
            self.ready = (framework, setting, model)

    def time_infer_batch(self, framework, setting, model="dlrm"):
        self.impl.infer(self.staged[self.i % len(self.staged)])
        self.impl.synchronize()
        self.i += 1


def _overhead_all(self):
    """The NVML sampler's cost on each pair's training steps: sampler off vs on, interleaved."""
    from recsys_impls.measure.nvml import sampler_overhead

    out = {}
    for framework in FRAMEWORKS:
        for setting in OVERHEAD_SETTINGS:
            try:
                impl, staged = _timed_fixture(framework, setting)
                out[(framework, setting)] = {"status": "ok", **sampler_overhead(_steps_fn(impl, staged), repeats=5)}
            except NotImplementedError as exc:
                out[(framework, setting)] = {"status": "skipped", "error": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one pair failing must not lose the others
                out[(framework, setting)] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return out


_overhead_all.timeout = 1800


def _steps_fn(impl, staged, target_s=0.5):
    """A callable running enough training steps (about target_s) for several sampler ticks."""
    from recsys_impls.measure.loop import timed_loop

    probe = timed_loop(impl.train_step, staged, warmup=3, start=0, steps=len(staged), sync=impl.synchronize)
    per_step = max(probe.seconds / probe.timed_steps, 1e-6)
    n = max(len(staged), math.ceil(target_s / per_step))

    def run():
        timed_loop(impl.train_step, staged, start=0, steps=n, sync=impl.synchronize)

    return run


class SamplerOverhead:
    """What the NVML sampler thread costs the measured training loop (without NVML: the thread alone)."""

    params = [FRAMEWORKS, OVERHEAD_SETTINGS]
    param_names = ["framework", "setting"]
    timeout = 1800
    setup_cache = _overhead_all

    def setup(self, results, framework, setting):
        self.o = bs.require_ok(results.get((framework, setting)))

    def track_sampler_thread_cpu_fraction(self, results, framework, setting):
        return self.o["thread_cpu_fraction"]

    track_sampler_thread_cpu_fraction.unit = "CPU s per s"

    def track_sampler_wall_overhead(self, results, framework, setting):
        return self.o["overhead_pct"]

    track_sampler_wall_overhead.unit = "percent"

    def track_sampler_read_seconds(self, results, framework, setting):
        return self.o["read_cost_s"]

    track_sampler_read_seconds.unit = "seconds"
