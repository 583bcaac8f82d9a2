"""``run_parallel(scenario) -> record`` for distributed scenarios (``ddp``, ``sharded``, ``mwms``, ...).

``recsys_impls.execute`` sends a scenario here when it needs more than one process (``threads:N`` stays
in one process and never comes here). This module writes a job file, launches the workers (torchrun
for PyTorch; TF_CONFIG processes for TensorFlow), and folds their per-rank results (each a
``record.rank_result``, timed by ``measure.loop``) into one record whose ``parallel`` section carries
the mode, world size, sharding, per-rank figures, imbalance, scaling efficiency and communication
volumes. A failed or timed out run raises WorkerFailed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from recsys_impls.config import Scenario, parallel_timeout_s
from recsys_impls.measure import roofline
from recsys_impls.parallel import comm, faults, launch
from recsys_impls.parallel.spec import ParallelPlan, check_supported, parse_parallel
from recsys_impls.parallel.worker import read_results, write_job
from recsys_impls.record import Record, timestamp


def _launch(scenario: Scenario, plan: ParallelPlan, run_dir: Path, timeout_s: float, job_extra: dict[str, Any],
            env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    threads = scenario.device.threads or 1
    write_job(run_dir, scenario, {"plan": plan.to_dict(), "threads_per_process": threads,
                                  "collective_timeout_s": max(30.0, timeout_s), **job_extra})
    env = {"OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           **(env or {})}
    if scenario.framework == "torch":
        argv = launch.torchrun_argv(plan.world_size, "recsys_impls.torch_impl.distributed_worker", [str(run_dir)])
        procs = [launch.Proc("torchrun", argv, env)]
        workers = plan.world_size
    else:
        from recsys_impls.parallel.tf_launch import tf_processes

        procs, workers = tf_processes(plan, run_dir, env)
    launch.run_group(procs, run_dir, timeout_s)
    results = read_results(run_dir, workers)
    peaks = launch.server_peaks(run_dir)
    if peaks:  # ParameterServerStrategy servers: measured by the launcher before it ended them
        results[0]["server_peak_rss_bytes"] = peaks
    return results


def run_distributed(scenario: Scenario, timeout_s: float | None = None, run_dir: Path | None = None,
                    job_extra: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Launch one distributed scenario and return its ``parallel`` section plus quality and size."""
    plan = parse_parallel(scenario.parallel)
    check_supported(plan, scenario.framework, scenario.device.device)
    faults.check_supported(scenario.framework, plan.mode, plan.sharding, scenario.straggler, scenario.balance)
    own_dir = run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="recsys-parallel-")) if own_dir else run_dir
    try:
        results = _launch(scenario, plan, run_dir, timeout_s or parallel_timeout_s(), job_extra or {}, env)
    finally:
        if own_dir and not os.environ.get("RECSYS_KEEP_RUN_DIR"):
            shutil.rmtree(run_dir, ignore_errors=True)
    if any(r.get("predict_only") for r in results):
        return {"ranks": results}
    return summarize(scenario, plan, results)


def summarize(scenario: Scenario, plan: ParallelPlan, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold per-rank results into the record's figures."""
    r0 = next(r for r in results if "quality" in r)
    global_batch = scenario.train.batch_size
    seconds = max(r["seconds"] for r in results)
    timed_steps = r0["timed_steps"]
    throughput = global_batch * timed_steps / seconds if seconds > 0 else None
    # Every rank timed the same barrier-bounded window; the slowest rank's steps are the run's steps.
    slowest = max(results, key=lambda r: (r.get("train") or {}).get("step_ms", {}).get("median") or 0.0)
    train = dict(slowest.get("train") or {}, batch_size=global_batch, samples_per_s=throughput,
                 timed_samples=global_batch * timed_steps, seconds=seconds, slowest_rank=slowest.get("rank"))
    fps = [r.get("replica_fingerprints") for r in results]
    section: dict[str, Any] = {
        "mode": plan.mode, "spec": plan.spec, "world_size": plan.world_size,
        "sharding": plan.sharding or None, "comm_hook": plan.comm_hook,
        "global_batch": global_batch, "local_batch": r0["local_batch"],
        "threads_per_process": r0.get("threads"), "backend": r0.get("backend"),
        "train_samples_per_s": throughput, "step_ms_mean": 1e3 * seconds / max(timed_steps, 1),
        "per_rank": _per_rank(results),
    }
    section.update(_consistency(scenario, plan, results, fps))
    section.update(_balance_section(scenario, plan, results))
    measured = r0.get("comm_measured")
    if measured:
        section["comm_bytes_per_step_measured"] = measured
        section["comm_projection"] = comm.project(measured, plan.mode, global_batch, plan.sharding)
    if "sharding_plan" in r0:
        section["sharding_plan"] = r0["sharding_plan"]
        if r0.get("sharding_plan_after"):
            section["sharding_plan_after_replan"] = r0["sharding_plan_after"]
        section["imbalance"] = r0["sharding_plan"].get("imbalance")
    peaks = [r["peak_rss_bytes"] for r in section["per_rank"] if r.get("peak_rss_bytes")]
    section["peak_rss_bytes_max"] = max(peaks) if peaks else None
    out = {"parallel": section, "train": train, "threads": r0.get("threads_section"),
           "quality": r0["quality"], "size": r0.get("size", {}),
           "data": r0.get("data_section") or {"name": r0.get("data_name"), **r0.get("data_info", {})},
           "final_loss": r0.get("final_loss"), "consistency": r0.get("consistency")}
    # retrieval models: rank 0 evaluated and served the trained replica as one process does
    out.update({k: r0[k] for k in _SERVED if k in r0})
    return out


_SERVED = ("serving", "latency_ms", "serving_throughput", "master_quality", "resolved_model")


def _consistency(scenario: Scenario, plan: ParallelPlan, results: list[dict[str, Any]],
                 fps: list[Any]) -> dict[str, Any]:
    """The replicas-identical check of every synchronous mode: each rank's SHA-256 of its parameters."""
    if _asynchronous(scenario, plan):
        return {"replicas_identical": None,
                "replicas_identical_reason": "parameter-server run: one copy of the parameters, on the ps"}
    prints = fps[0] if fps and fps[0] else None
    if not prints or any(p is None for p in prints):
        return {"replicas_identical": None, "replicas_identical_reason": "no parameter fingerprints reported"}
    scope = ("every parameter of every replica" if plan.data_parallel else
             "each rank's dense (data-parallel) replica plus every table's digest, hashed where its shards are")
    return {"replicas_identical": len(set(prints)) == 1, "replica_sha256": list(prints), "replica_sha256_scope": scope}


def _asynchronous(scenario: Scenario, plan: ParallelPlan) -> bool:
    return plan.mode == "ps" or (plan.mode == "sharded" and scenario.framework == "tf")


def _balance_section(scenario: Scenario, plan: ParallelPlan, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Faults and balancing: the straggler, the hot table, each rank's busy time and their imbalance."""
    from recsys_impls.parallel import balance, faults

    out: dict[str, Any] = {}
    straggler = faults.parse_straggler(scenario.straggler)
    hot = faults.parse_hot_table(scenario.data.hot_table)
    out["faults"] = {
        "straggler": None if straggler is None else {
            **straggler.to_dict(), **next((r["straggler"] for r in results if r.get("straggler")), {})},
        "hot_table": None if hot is None else {
            "table": hot.table, "share": hot.share,
            "mean_bag": faults.hot_bag_mean(hot, scenario.model.num_tables, scenario.model.ids_per_feature)},
    }
    spec = faults.parse_balance(scenario.balance)
    busy = [(r.get("busy_ms") or {}).get("median") for r in results]
    r0 = results[0]
    section: dict[str, Any] = {"mode": spec.mode}
    if r0.get("balance_history"):
        section = balance.summarize(r0["balance_history"], spec.mode, spec.every)
    elif r0.get("rebalance"):
        section = {"mode": spec.mode, **r0["rebalance"]}
    if any(b is not None for b in busy):
        section["busy_ms_median_per_rank"] = busy
        section["imbalance"] = balance.imbalance(busy)
    out["balance"] = section
    return out


_RANK_KEYS = ("rank", "role", "samples_per_s", "step_ms_mean", "step_ms_p50", "seconds", "local_bytes",
              "variable_bytes", "local_lookups_per_batch", "final_loss", "peak_rss_bytes", "rss_by_phase",
              "rss_peak_phase")


def _per_rank(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per process: each worker's own figures; for ParameterServerStrategy the chief's row plus
    one per ps (placed bytes, lookups) and per worker, with the servers' peak RSS read by the launcher."""
    rows = [{k: r.get(k) for k in _RANK_KEYS if k in r or k != "role"} for r in results]
    for row, r in zip(rows, results, strict=True):
        row["step_ms"] = (r.get("train") or {}).get("step_ms")
        if r.get("busy_ms"):
            row["busy_ms"] = r["busy_ms"]
        prints = r.get("replica_fingerprints")
        if prints and isinstance(r.get("rank"), int) and r["rank"] < len(prints):
            row["sha256"] = prints[r["rank"]]
    r0 = results[0]
    if "per_rank_override" in r0:
        peaks = r0.get("server_peak_rss_bytes", {})
        for extra in r0["per_rank_override"]:
            row = {k: extra.get(k) for k in _RANK_KEYS if k in extra}
            row["peak_rss_bytes"] = peaks.get(str(extra["rank"]))
            if row["peak_rss_bytes"] is None:
                row["peak_rss_bytes_reason"] = "server ended before its memory could be read"
            rows.append(row)
    return rows


def run_parallel(scenario: Scenario, progress: bool = False, baseline: bool = True,
                 timeout_s: float | None = None) -> Record:
    """Record for a distributed scenario. With ``baseline``, the same launcher also runs world size 1 so the
    scaling efficiency compares like with like (same code path, same threads per process)."""
    from recsys_impls.measure import fingerprint

    plan = parse_parallel(scenario.parallel)
    if not plan.distributed:
        raise ValueError(f"run_parallel launches distributed scenarios; {scenario.parallel!r} runs in one process")
    started = time.time()
    out = run_distributed(scenario, timeout_s)
    par = out["parallel"]
    if baseline and plan.world_size > 1:
        one = replace(scenario, parallel=_with_world(plan, 1), straggler="none", balance="static")
        base = run_distributed(one, timeout_s)
        b = base["parallel"]["train_samples_per_s"]
        par["baseline_1_process"] = {"spec": one.parallel, "train_samples_per_s": b,
                                     "auc": base["quality"].get("auc"),
                                     **{m: base["quality"].get(m) for m in _headline(scenario)},
                                     "step_ms_mean": base["parallel"]["step_ms_mean"],
                                     "step_ms": base["train"].get("step_ms")}
        if b and par["train_samples_per_s"]:
            par["speedup"] = par["train_samples_per_s"] / b
            par["scaling_efficiency"] = par["train_samples_per_s"] / (plan.world_size * b)
    else:
        par.setdefault("scaling_efficiency", None)
        par["scaling_efficiency_reason"] = "no 1-process baseline run (baseline=False or world size 1)"
    if plan.comm_hook != "none":
        par["comm_hook_effect"] = hook_effect(scenario, plan, out, timeout_s)
    if scenario.balance != "static":
        par["balance_effect"] = balance_effect(scenario, out, timeout_s)
    if _asynchronous(scenario, plan):
        par["consistency"] = _async_consistency(out, par)
    served = out.get("serving_throughput")
    throughput = ({"infer_samples_per_s": None,
                   "infer_samples_per_s_reason": "distributed scenarios time training; inference is single-process"}
                  if served is None else dict(served, serving_scope="rank 0 alone, after training, as one process"))
    record = Record.new(
        scenario, quality=out["quality"], parallel=par, train=out["train"],
        throughput={"train_samples_per_s": par["train_samples_per_s"], **throughput,
                    "input_conversion_in_timed_window": False},
        latency_ms=out.get("latency_ms") or {"p50": None, "reason": "not measured for distributed scenarios"},
        size=out["size"], data=out["data"],
        memory=_memory(par),
        energy={"joules": None, "reason": "not sampled for distributed scenarios"},
        threads=out.get("threads"),
        env=fingerprint.environment_fingerprint(),
        duration_s=time.time() - started,
        timestamp=timestamp(started),
    )
    if "serving" in out:
        record["serving"] = record["infer"] = out["serving"]
        record["scenario"]["model"].update(out.get("resolved_model") or {})
    if scenario.compression not in ("", "none"):
        from recsys_impls.compression.section import distributed_section

        record["compression"] = distributed_section(record, scenario, plan.mode, timeout_s,
                                                    master=out.get("master_quality"))
    if scenario.model.spec.task == "retrieval":
        par["semantics"] = _RETRIEVAL_SEMANTICS[scenario.model.arch]
        record["roofline"] = {"reason": "no analytic work model for retrieval models"}
        return record.cleaned()
    if plan.mode == "ps" or (plan.mode == "sharded" and scenario.framework == "tf"):
        record["roofline"] = {"train": None, "infer": None, "reason": "asynchronous parameter-server updates: "
                              "a step's time is the coordinator's dispatch, not one rank's work"}
    else:  # each rank's step on its local batch, against one process's peaks at its thread count
        roofline.attach(record, scenario, threads=par.get("threads_per_process"), batch_size=par.get("local_batch"))
    return record.cleaned()


_RETRIEVAL_SEMANTICS = {
    "two-tower": "data parallel: the global batch of --batch-size split over the ranks (B/N contiguous rows "
                 "each); each rank's in-batch sampled softmax scores its B/N queries against the item vectors "
                 "(and logQ terms) of the whole global batch, all-gathered with a differentiable all-gather, so "
                 "the averaged gradient is the one-process gradient on the same B-sample batch; evaluation and "
                 "serving on rank 0 after training",
    "neumf": "data parallel: the global batch of --batch-size (positives and their sampled negatives, drawn once "
             "from the seed as one process draws them) split over the ranks (B/N contiguous rows each); gradients "
             "averaged over the ranks, so each step is the one-process step on the same batch; evaluation and "
             "serving on rank 0 after training",
}


def _headline(scenario: Scenario) -> tuple[str, ...]:
    """The quality figures a 1-process baseline is compared on (the ranking models': auc, kept as it was)."""
    spec = scenario.model.spec
    return () if spec.task != "retrieval" else spec.quality_metrics[:1]


def hook_effect(scenario: Scenario, plan: ParallelPlan, out: dict[str, Any],
                timeout_s: float | None = None) -> dict[str, Any]:
    """What a communication hook changes: the same world size without the hook, run by the same launcher;
    AUC difference (hook minus plain) and step-time ratio (hook / plain; < 1 means faster)."""
    ref_spec = f"{plan.mode}:{plan.world_size}"
    ref = run_distributed(replace(scenario, parallel=ref_spec), timeout_s)
    auc, ref_auc = out["quality"].get("auc"), ref["quality"].get("auc")
    step, ref_step = out["parallel"]["step_ms_mean"], ref["parallel"]["step_ms_mean"]
    return {"reference_spec": ref_spec, "hook": plan.comm_hook, "auc": auc, "reference_auc": ref_auc,
            "auc_delta": auc - ref_auc if auc is not None and ref_auc is not None else None,
            "step_ms_mean": step, "reference_step_ms_mean": ref_step,
            "step_time_ratio": step / ref_step if ref_step else None,
            "compressed": "dense gradient buckets only; sparse embedding gradients use the plain all-reduce"}


def balance_effect(scenario: Scenario, out: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
    """The static plan under the same fault, run by the same launcher right after: throughput ratio
    (adaptive / static; > 1 means faster) and AUC difference (adaptive - static). One pair only: for a
    ratio with an interval, interleave runs (benchmarks/bench_balance.py)."""
    ref = run_distributed(replace(scenario, balance="static"), timeout_s)
    tp, ref_tp = out["parallel"]["train_samples_per_s"], ref["parallel"]["train_samples_per_s"]
    auc, ref_auc = out["quality"].get("auc"), ref["quality"].get("auc")
    return {"reference_balance": "static", "train_samples_per_s": tp, "reference_train_samples_per_s": ref_tp,
            "throughput_ratio": tp / ref_tp if tp and ref_tp else None,
            "auc": auc, "reference_auc": ref_auc,
            "auc_delta": auc - ref_auc if auc is not None and ref_auc is not None else None,
            "reference_imbalance": (ref["parallel"].get("balance") or {}).get("imbalance"),
            "pairs": 1}


def _async_consistency(out: dict[str, Any], par: dict[str, Any]) -> dict[str, Any]:
    """Staleness of every update and the AUC against the synchronous run on the same data and steps (the
    1-process baseline: one worker applies the closures one after another, so no update is stale)."""
    r = out.get("consistency") or {}
    base = par.get("baseline_1_process") or {}
    auc, sync_auc = out["quality"].get("auc"), base.get("auc")
    c = {"staleness": r.get("staleness"), "sync_reference": base.get("spec"), "auc": auc, "sync_auc": sync_auc,
         "auc_delta_vs_sync": auc - sync_auc if auc is not None and sync_auc is not None else None}
    if sync_auc is None:
        c["sync_reason"] = "no 1-process baseline run (baseline=False or world size 1)"
    return c


def _memory(par: dict[str, Any]) -> dict[str, Any]:
    """Peak host RSS of the largest process of the run (per-process figures are in parallel.per_rank)."""
    peak = par.get("peak_rss_bytes_max")
    out: dict[str, Any] = {"peak_host_rss_bytes": peak, "peak_host_rss_scope": "max over the run's processes",
                           "peak_device_bytes": None,
                           "peak_device_bytes_reason": "not gathered from distributed workers"}
    if peak is None:
        out["reason"] = "no process reported its peak RSS"
    return out


def _with_world(plan: ParallelPlan, n: int) -> str:
    parts = plan.spec.split(":")
    parts[1] = str(n)
    return ":".join(parts)
