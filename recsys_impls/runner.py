"""Run one scenario end to end and return its record (DESIGN.md section 2).

The runner is the single code path behind the CLI and the asv ``track_*`` benchmarks: load data,
build the implementation, stage batches (outside the timed window), train with warm-up excluded,
evaluate, time inference and single-batch latency, and collect size, memory, energy and the
environment fingerprint. Measurement wraps the implementation from outside.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import numpy as np

from recsys_impls import metrics
from recsys_impls.base import Recommender
from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.measure import fingerprint, host, nvml, timing

SCHEMA_VERSION = 1


def _progress(iterable: Iterable, enabled: bool, desc: str, total: int | None = None) -> Iterable:
    """A tqdm bar on stderr for long loops when asked for; the plain iterable otherwise."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, unit="step")


def prepare(scenario: Scenario) -> tuple[Scenario, Dataset]:
    """Load the scenario's data and fit the model shape to it (MovieLens decides its own tables)."""
    from recsys_impls.data.loader import load_dataset

    scenario = scenario.validate()
    t = scenario.train
    data = load_dataset(scenario, num_train=t.steps * t.batch_size, num_eval=t.eval_samples)
    model = replace(scenario.model, num_dense=data.num_dense, table_sizes=tuple(data.table_sizes))
    return replace(scenario, model=model).validate(), data


def _stage_all(impl: Recommender, batches: list[Batch]) -> tuple[list[Any], float]:
    """Stage each distinct batch once (epochs repeat the same Batch objects)."""
    start = time.perf_counter()
    cache: dict[int, Any] = {}
    staged = [cache[id(b)] if id(b) in cache else cache.setdefault(id(b), impl.stage(b)) for b in batches]
    impl.synchronize()
    return staged, time.perf_counter() - start


def training_schedule(train: Batch, batch_size: int, steps: int) -> tuple[list[Batch], float]:
    """``steps`` batches in order, cycling over the data in epochs when it is smaller than
    steps x batch_size (MovieLens holds 80k training ratings). Returns (batches, epochs)."""
    batches = train.split(batch_size)
    if not batches:
        raise UsageError(f"--batch-size {batch_size}: larger than the {train.batch_size} training samples available")
    schedule = [batches[i % len(batches)] for i in range(steps)]
    return schedule, steps / len(batches)


def train(
    impl: Recommender, batches: list[Batch], warmup_steps: int, progress: bool = False,
    sampler: nvml.NvmlSampler | None = None,
) -> dict[str, Any]:
    """Train one pass over ``batches``; the first ``warmup_steps`` steps are excluded from timing."""
    staged, stage_s = _stage_all(impl, batches)
    warmup = min(warmup_steps, max(len(staged) - 1, 0))
    for s in staged[:warmup]:
        impl.train_step(s)
    impl.synchronize()
    timed = staged[warmup:]
    with host.host_window() as host_w, sampler.window() if sampler else nullcontext() as window:
        start = time.perf_counter()
        for s in _progress(timed, progress, "train", len(timed)):
            impl.train_step(s)
        impl.synchronize()
        seconds = time.perf_counter() - start
    samples = sum(b.batch_size for b in batches[warmup:])
    return {
        "steps": len(batches),
        "warmup_steps": warmup,
        "timed_steps": len(timed),
        "timed_samples": samples,
        "seconds": seconds,
        "step_ms_mean": 1e3 * seconds / max(len(timed), 1),
        "samples_per_s": samples / seconds if seconds > 0 else None,
        "stage_seconds": stage_s,
        "host_window": host_w.summary(),
        "final_loss": float(impl.loss(staged[-1])),
        "energy_window": window,
    }


def infer(
    impl: Recommender, batches: list[Batch], sampler: nvml.NvmlSampler | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict every batch; times the whole pass after one warm-up batch. Returns probabilities."""
    staged, stage_s = _stage_all(impl, batches)
    impl.to_numpy(impl.infer(staged[0]))  # warm-up: tracing, autotuning, caches
    impl.synchronize()
    with sampler.window() if sampler else nullcontext() as window:
        start = time.perf_counter()
        outputs = [impl.infer(s) for s in staged]
        impl.synchronize()
        seconds = time.perf_counter() - start
    probs = np.concatenate([impl.to_numpy(o) for o in outputs])
    samples = sum(b.batch_size for b in batches)
    return probs, {
        "seconds": seconds,
        "samples": samples,
        "samples_per_s": samples / seconds if seconds > 0 else None,
        "stage_seconds": stage_s,
        "energy_window": window,
    }


def latency(impl: Recommender, batches: list[Batch]) -> dict[str, Any]:
    """Single-batch inference latency, host-visible: each call ends with the result on the host."""
    staged, _ = _stage_all(impl, batches)
    impl.to_numpy(impl.infer(staged[0]))
    samples = []
    for s in staged:
        t0 = time.perf_counter()
        impl.to_numpy(impl.infer(s))
        samples.append(time.perf_counter() - t0)
    out = timing.latency_percentiles(samples)
    out["batch_size"] = batches[0].batch_size
    return out


def _energy(window: Any, samples: int) -> dict[str, Any]:
    if window is None:
        return {"joules": None, "reason": "energy not sampled"}
    return window.summary(samples=samples)


def _clean(value: Any) -> Any:
    """JSON-safe plain types: NaN/inf become None (the reason sits beside them), str subclasses
    (torch's TorchVersion) plain str, so a pickled record never imports a framework to load."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def evaluate(impl: Recommender, eval_batch: Batch, batch_size: int,
             sampler: nvml.NvmlSampler | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Quality on the eval split and inference throughput over it."""
    chunks = eval_batch.split(batch_size) or [eval_batch]
    probs, inf = infer(impl, chunks, sampler)
    labels = np.concatenate([c.labels for c in chunks])
    quality = metrics.all_metrics(labels, probs)
    quality["eval_samples"] = int(labels.shape[0])
    return quality, inf


def run_scenario(
    scenario: Scenario,
    progress: bool = False,
    prepared: tuple[Scenario, Dataset] | None = None,
    after_train: Callable[[Recommender, Scenario, Dataset, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and measure one scenario; returns the JSON-ready record."""
    if scenario.parallel not in ("none", ""):  # threads:N comes back here as parallel=none, threads=N
        from recsys_impls.parallel import run_parallel

        return run_parallel(scenario, progress=progress)

    started = time.time()
    scenario, data = prepared or prepare(scenario)
    from recsys_impls import registry

    impl = registry.build(scenario)
    t = scenario.train
    sampler = nvml.NvmlSampler()
    idle_watts = sampler.measure_idle(seconds=1.0) if sampler.available else None

    train_batches, epochs = training_schedule(data.train, t.batch_size, t.steps)
    tr = train(impl, train_batches, t.warmup_steps, progress, sampler if sampler.available else None)
    quality, inf = evaluate(impl, data.eval, t.batch_size, sampler if sampler.available else None)
    lat_batches = data.eval.split(t.latency_batch_size)[: t.latency_batches]
    lat = latency(impl, lat_batches) if lat_batches else {"p50": None, "reason": "eval split too small"}
    if data.info.get("reference_auc") is not None:
        quality["reference_auc"] = data.info["reference_auc"]

    size = impl.storage_bytes()
    device_mem = getattr(impl, "peak_device_bytes", lambda: None)()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "framework": scenario.framework,
        "scenario": scenario.to_dict(),
        "quality": quality,
        "train": {k: v for k, v in tr.items() if k not in ("energy_window", "host_window")},
        "throughput": {
            "train_samples_per_s": tr["samples_per_s"],
            "infer_samples_per_s": inf["samples_per_s"],
            "input_conversion_in_timed_window": False,
        },
        "latency_ms": lat,
        "size": {"model_bytes": size.get("model"), "embedding_bytes": size.get("embedding"),
                 **{k: v for k, v in size.items() if k not in ("model", "embedding")}},
        "memory": {
            "peak_host_rss_bytes": host.peak_rss_bytes(),
            "peak_device_bytes": device_mem,
            **({} if device_mem is not None else {"peak_device_bytes_reason": _device_memory_reason(scenario)}),
        },
        "energy": {
            "train": _energy(tr["energy_window"], tr["timed_samples"]) | {"idle_watts": idle_watts},
            "infer": _energy(inf["energy_window"], inf["samples"]) | {"idle_watts": idle_watts},
        } if sampler.available else nvml.null_summary(sampler.reason),
        # Host side of the timed training window: CPU seconds, utilisation, RAPL joules or the reason.
        "cpu": {"train": tr["host_window"], **host.cpu_energy_status()},
        "data": {"name": data.name, "train_samples": data.train.batch_size, "epochs": epochs, **data.info},
        "implementation": impl.describe(),
        "env": fingerprint.environment_fingerprint(),
    }
    sampler.close()
    if after_train is not None:
        after_train(impl, scenario, data, record)
    record["duration_s"] = time.time() - started
    record["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    return _clean(record)


def _device_memory_reason(scenario: Scenario) -> str:
    if scenario.device.device == "cpu":
        return "device is cpu: no device memory in use (host memory is peak_host_rss_bytes)"
    return "the implementation did not report device memory"


def failed_record(scenario: Scenario, error: BaseException) -> dict[str, Any]:
    """What a failed scenario leaves behind: its axes and why, so nothing else is lost."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "skipped" if isinstance(error, ScenarioUnsupported) else "failed",
        "framework": scenario.framework,
        "scenario": scenario.to_dict(),
        "error": f"{type(error).__name__}: {error}",
    }
