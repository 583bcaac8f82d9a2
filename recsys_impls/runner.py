"""Run one single-process scenario end to end and return its record.

``recsys_impls.execute`` decides how a scenario runs and calls this for single-process (plain,
threaded and compressed) scenarios: load data, build the implementation, train on a stream of batches
(``data.stream``: a bounded rotation staged before the window, or a bounded prefetch queue inside it),
evaluate, time inference and single-batch latency through the one timed loop
(``measure.loop``), and collect size, memory, energy and the environment fingerprint. Measurement
wraps the implementation from outside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recsys_impls import hugepages, metrics, threads
from recsys_impls.base import Recommender
from recsys_impls.config import ROTATION_BYTES, Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.data.loader import prepare
from recsys_impls.data.stream import DEFAULT_DEPTH, BatchSource, LoadedBatches, Prefetcher, produce, training_source
from recsys_impls.errors import UsageError
from recsys_impls.measure import fingerprint, host, nvml, roofline, timing
from recsys_impls.measure.loop import sync_each_step_on, timed_loop
from recsys_impls.record import Record, timestamp

__all__ = ["evaluate", "infer", "latency", "prepare", "run_scenario", "train", "training_schedule"]


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


PRODUCER_PROBE_BATCHES = 8  # end-to-end: batches produced alone before the window, for the pipeline's rate


def rotation_size(source: BatchSource, steps: int) -> int:
    """How many distinct batches a compute-only run stages: a loaded split's own batches (it is in memory
    already), else as many as ``ROTATION_BYTES`` holds."""
    if source.distinct is not None:
        return max(1, min(source.distinct, steps))
    per_batch = max(source.batch(0).nbytes, 1)
    return max(1, min(steps, ROTATION_BYTES // per_batch))


def train(
    impl: Recommender, batches: list[Batch] | BatchSource, warmup_steps: int, progress: bool = False,
    sampler: nvml.NvmlSampler | None = None, steps: int | None = None, mode: str = "compute-only",
    depth: int = DEFAULT_DEPTH,
) -> dict[str, Any]:
    """Train ``steps`` steps on a batch source (or a list of batches, one per step); the first
    ``warmup_steps`` are not timed.

    ``compute-only``: a bounded set of distinct batches (``rotation_size``) is produced and staged before
    the window and rotated in it. ``end-to-end``: a worker thread produces and stages every batch into a
    bounded queue (``data.stream.Prefetcher``) while the timed loop consumes it; the time the loop waits
    for input is part of the window and reported as ``input.wait_fraction``.
    """
    source = LoadedBatches(batches) if isinstance(batches, list) else batches
    steps = len(batches) if steps is None and isinstance(batches, list) else steps
    if not steps or steps < 1:
        raise ValueError(f"train: steps = {steps!r}; need at least one")
    warmup = min(max(warmup_steps, 0), steps - 1)
    host_w = host.host_window()
    window = [host_w] + ([sampler.window()] if sampler else [])
    sync_each = sync_each_step_on(impl.scenario.device.device)
    if mode == "end-to-end":
        probe = produce(source, range(min(PRODUCER_PROBE_BATCHES, steps)), impl.stage)
        producer = probe.summary()
        probe.items.clear()
        last: list[Any] = []

        def step(_: Any) -> None:
            staged = pf.get()
            impl.train_step(staged)
            last[:] = [staged]

        with Prefetcher(source, steps, impl.stage, depth=depth) as pf:
            res = timed_loop(step, [None], warmup=warmup, steps=steps - warmup, sync=impl.synchronize,
                             sync_each_step=sync_each, window=window, progress=progress, desc="train")
            wait_s = float(sum(pf.waits[warmup:]))
            held = {"queue_depth": depth, "max_batches_ahead": pf.max_ahead}
        distinct = min(source.distinct or steps, steps)  # a loaded split rotates in the queue too
        final_staged, stage_s = last[0], 0.0
    else:
        made = produce(source, range(rotation_size(source, steps)), impl.stage)
        impl.synchronize()
        staged = made.items
        res = timed_loop(impl.train_step, staged, warmup=warmup, steps=steps - warmup, sync=impl.synchronize,
                         sync_each_step=sync_each, window=window, progress=progress, desc="train")
        final_staged, distinct, stage_s, producer = staged[(steps - 1) % len(staged)], len(staged), made.seconds, \
            made.summary()
        wait_s, held = 0.0, {"staged_batches": len(staged)}
    bs = source.batch_size
    out = res.summary(bs)
    out.update(steps=steps, batch_size=bs, stage_seconds=stage_s, distinct_batches=distinct,
               host_window=res.windows[0].summary(), final_loss=float(impl.loss(final_staged)),
               energy_window=res.windows[1] if sampler else None)
    out["input"] = {
        "mode": mode, "source": source.describe(), "distinct_batches": distinct, **held,
        "producer": {**producer, "includes": "drawing or slicing the batch and staging it as framework tensors",
                     "threads": 1},
        "wait_seconds": wait_s if mode == "end-to-end" else None,
        "wait_fraction": wait_s / res.seconds if mode == "end-to-end" and res.seconds > 0 else None,
        **({} if mode == "end-to-end" else {"wait_reason": "compute-only: input is staged before the window"}),
        "rotation_bytes_cap": ROTATION_BYTES if mode != "end-to-end" and source.distinct is None else None,
    }
    return out


def infer(
    impl: Recommender, batches: list[Batch], sampler: nvml.NvmlSampler | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict every batch once in the timed window, after one warm-up batch. Returns probabilities."""
    staged, stage_s = _stage_all(impl, batches)
    res = timed_loop(impl.infer, staged, warmup=1, start=0, steps=len(staged), sync=impl.synchronize,
                     sync_each_step=sync_each_step_on(impl.scenario.device.device),
                     window=[sampler.window()] if sampler else [], keep_outputs=True)
    probs = np.concatenate([impl.to_numpy(o) for o in res.outputs or []])
    samples = sum(b.batch_size for b in batches)
    return probs, {
        "seconds": res.seconds,
        "samples": samples,
        "batches": len(staged),
        "batch_size": batches[0].batch_size,
        "batch_ms": res.stats(),
        "samples_per_s": samples / res.seconds if res.seconds > 0 else None,
        "stage_seconds": stage_s,
        "energy_window": res.windows[0] if sampler else None,
    }


def latency(impl: Recommender, batches: list[Batch]) -> dict[str, Any]:
    """Single-batch inference latency, host-visible: each call ends with the result on the host."""
    staged, _ = _stage_all(impl, batches)
    res = timed_loop(lambda s: impl.to_numpy(impl.infer(s)), staged, warmup=1, start=0, steps=len(staged),
                     sync=impl.synchronize, sync_each_step=True)
    out = timing.latency_percentiles(res.step_seconds)
    out["batch_size"] = batches[0].batch_size
    out["stats"] = res.stats()
    return out


def energy_section(window: Any, samples: int) -> dict[str, Any]:
    """One phase's NVML energy figures (``nvml`` window) per sample, or why none were sampled."""
    if window is None:
        return {"joules": None, "reason": "energy not sampled"}
    return window.summary(samples=samples)


def energy_record(sampler: nvml.NvmlSampler, idle_watts: float | None, train: tuple[Any, int],
                  infer: tuple[Any, int]) -> dict[str, Any]:
    """The record's ``energy``: training and inference as (window, samples), each with the idle power
    measured before them; NVML's reason where the sampler has no GPU."""
    if not sampler.available:
        return nvml.null_summary(sampler.reason)
    return {"train": energy_section(*train) | {"idle_watts": idle_watts},
            "infer": energy_section(*infer) | {"idle_watts": idle_watts}}


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
) -> Record:
    """Train, evaluate and measure one single-process scenario; returns its record.

    Distributed scenarios never come here: ``recsys_impls.execute`` sends them to the launcher.
    """
    if scenario.parallel not in ("none", ""):
        raise ValueError(f"run_scenario runs single-process scenarios; {scenario.parallel!r} goes through execute()")
    started = time.time()
    scenario, data = prepared or prepare(scenario, streaming=True)
    from recsys_impls import registry

    impl = registry.build(scenario)
    t = scenario.train
    sampler = nvml.NvmlSampler()
    idle_watts = sampler.measure_idle(seconds=1.0) if sampler.available else None

    source = training_source(data, t.batch_size)
    tr = train(impl, source, t.warmup_steps, progress, sampler if sampler.available else None, steps=t.steps,
               mode=t.input_mode)
    input_section = tr.pop("input")
    epochs = t.steps / tr["distinct_batches"]
    quality, inf = evaluate(impl, data.eval, t.batch_size, sampler if sampler.available else None)
    lat_batches = data.eval.split(t.latency_batch_size)[: t.latency_batches]
    lat = latency(impl, lat_batches) if lat_batches else {"p50": None, "reason": "eval split too small"}
    if data.info.get("reference_auc") is not None:
        quality["reference_auc"] = data.info["reference_auc"]

    size = impl.storage_bytes()
    device_mem = getattr(impl, "peak_device_bytes", lambda: None)()
    record = Record.new(
        scenario,
        quality=quality,
        train={k: v for k, v in tr.items() if k not in ("energy_window", "host_window")},
        infer={k: v for k, v in inf.items() if k != "energy_window"},
        throughput={
            "train_samples_per_s": tr["samples_per_s"],
            "infer_samples_per_s": inf["samples_per_s"],
            "input_conversion_in_timed_window": t.input_mode == "end-to-end",
        },
        latency_ms=lat,
        size={"model_bytes": size.get("model"), "embedding_bytes": size.get("embedding"),
              **{k: v for k, v in size.items() if k not in ("model", "embedding")}},
        memory={
            "peak_host_rss_bytes": host.peak_rss_bytes(),
            "huge_pages": hugepages.record_section(),
            "peak_device_bytes": device_mem,
            **({} if device_mem is not None else {"peak_device_bytes_reason": device_memory_reason(scenario)}),
        },
        energy=energy_record(sampler, idle_watts, (tr["energy_window"], tr["timed_samples"]),
                             (inf["energy_window"], inf["samples"])),
        # Host side of the timed training window: CPU seconds, utilisation, RAPL joules or the reason.
        cpu={"train": tr["host_window"], **host.cpu_energy_status()},
        data={"name": data.name, "train_samples": tr["distinct_batches"] * t.batch_size, "epochs": epochs,
              **data.info},
        implementation=impl.describe(),
        env=fingerprint.environment_fingerprint(),
    )
    sampler.close()
    record["threads"] = threads.record_section(scenario.framework)
    roofline.attach(record, scenario, threads=record["threads"].get("intra_op"))
    record["input"] = input_section | roofline.input_verdict(
        t.input_mode, input_section["wait_fraction"], input_section["producer"]["samples_per_s"],
        tr["samples_per_s"], ((record.get("roofline") or {}).get("train") or {}).get("bound"))
    if after_train is not None:
        after_train(impl, scenario, data, record)
    record["duration_s"] = time.time() - started
    record["timestamp"] = timestamp(started)
    return record.cleaned()


def device_memory_reason(scenario: Scenario) -> str:
    """Why a record has no peak device memory figure."""
    if scenario.device.device == "cpu":
        return "device is cpu: no device memory in use (host memory is peak_host_rss_bytes)"
    return "the implementation did not report device memory"
