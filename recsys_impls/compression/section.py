"""The record's "compression" section: a compressed run against its fp32 baseline (same data, seed).

``run_compression(scenario)`` runs the baseline (cached per process) and the compressed scenario on the
same prepared data, and returns the compressed record with a ``compression`` section:
stored bytes (serialized .npz of the stored arrays; the baseline measured through the same
container), ratios, quality and its change, speed relative to the baseline, and the MLPerf-style gate
("99.9%" if AUC >= 0.999 x baseline, "99%" if >= 0.99 x, else "none").

Two float32 trainings that differ only in rounding (a different but equivalent kernel) drift apart
under SGD; on the quick benchmark shapes that alone moves AUC by ~0.002. ``auc_delta_vs_master``
therefore also reports the compressed model against its own float32 master weights (the effect of
the post-training steps alone: quantization, freq-prune, mlp-int8).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from recsys_impls.compression import model_state as ms
from recsys_impls.compression.spec import CompressionPlan, parse_compression
from recsys_impls.config import ModelConfig, Scenario
from recsys_impls.init_params import initial_params

_BASELINES: dict[Any, dict[str, Any]] = {}


def quality_gate(value: float | None, baseline: float | None) -> str:
    """Which MLPerf-style gate a compressed model passes on its gate metric (AUC for the ranking models, as in
    MLPerf DLRM; the first published higher-is-better figure otherwise): "99.9%", "99%" or "none"."""
    if value is None or baseline is None or math.isnan(value) or math.isnan(baseline):
        return "none"
    if value >= 0.999 * baseline:
        return "99.9%"
    if value >= 0.99 * baseline:
        return "99%"
    return "none"


def baseline_stored_bytes(config: ModelConfig, seed: int) -> dict[str, int]:
    """The fp32 model's bytes in the same .npz container the compressed models are stored in."""
    return ms.split_bytes(ms.finalize(config, CompressionPlan(), initial_params(config, seed)))


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not num or not den else num / den


def compression_section(record: dict[str, Any], baseline: dict[str, Any],
                        baseline_bytes: dict[str, int]) -> dict[str, Any]:
    """Compare a compressed record with its baseline record (both from ``runner.run_scenario``)."""
    q, bq = record["quality"], baseline["quality"]
    size = record["size"]
    thr, bthr = record["throughput"], baseline["throughput"]
    lat, blat = record.get("latency_ms", {}), baseline.get("latency_ms", {})
    from recsys_impls.models import model_spec

    plan = parse_compression(record["scenario"]["compression"])
    spec = model_spec((record["scenario"].get("model") or {}).get("arch", "dlrm"))
    gate_metric = spec.higher_is_better[0]
    out: dict[str, Any] = {
        "spec": plan.spec,
        "methods": list(plan.methods),
        "model_bytes": size["model_bytes"],
        "embedding_bytes": size["embedding_bytes"],
        "baseline_model_bytes": baseline_bytes["model"],
        "baseline_embedding_bytes": baseline_bytes["embedding"],
        "model_ratio": _ratio(baseline_bytes["model"], size["model_bytes"]),
        "embedding_ratio": _ratio(baseline_bytes["embedding"], size["embedding_bytes"]),
        "bytes_note": "serialized .npz of the stored arrays, baseline fp32 in the same container",
        "baseline_storage_bytes_native": baseline["size"]["model_bytes"],
        "gate": quality_gate(q.get(gate_metric), bq.get(gate_metric)),
        "gate_metric": gate_metric,
        "infer_speed_vs_baseline": _ratio(thr.get("infer_samples_per_s"), bthr.get("infer_samples_per_s")),
        "train_speed_vs_baseline": _ratio(thr.get("train_samples_per_s"), bthr.get("train_samples_per_s")),
        "latency_p50_vs_baseline": _ratio(lat.get("p50"), blat.get("p50")),
        "latency_p99_vs_baseline": _ratio(lat.get("p99"), blat.get("p99")),
    }
    for key in spec.quality_metrics:
        a, b = q.get(key), bq.get(key)
        out[f"baseline_{key}"] = b
        out[f"{key}_delta"] = None if a is None or b is None else a - b
    return out


def master_plan(plan: CompressionPlan) -> CompressionPlan:
    """The plan without its post-training steps: the float32 master weights in the trained layout."""
    from recsys_impls.compression.layouts import plan_layout

    trained_as = plan_layout(plan).trained_as
    layout = replace(plan, layout=trained_as, layout_args=(), freq_min_count=0) if trained_as else plan
    return replace(layout, precision="fp32", mlp_int8=False, prune_sparsity=0.0)


def post_training_effect(impl: Any, scenario: Scenario, data: Any, record: dict[str, Any]) -> None:
    """``run_scenario`` after_train hook: quality of the same run's float32 master weights (numpy oracle),
    so the post-training steps' own effect is separated from run-to-run training noise."""
    from recsys_impls.metrics import all_metrics

    plan = parse_compression(scenario.compression)
    mp = master_plan(plan)
    stored = ms.finalize(scenario.model, mp, impl.get_params())
    probs = ms.reference_forward(scenario.model, mp, stored, data.eval)
    q = all_metrics(data.eval.labels, probs)
    record["master_quality"] = {"auc": q["auc"], "logloss": q["logloss"], "plan": mp.spec if mp.methods else "fp32",
                                "note": "same trained weights before post-training compression"}


def _run_retrieval_compression(scenario: Scenario, progress: bool) -> dict[str, Any]:
    """The retrieval models' form of ``run_compression``: the same interactions (loaded once), seed and
    training batches for the baseline and the compressed model; quality is the model's own figures."""
    from recsys_impls.retrieval_runner import check_axes, load_data, run_retrieval

    check_axes(scenario)  # an unsupported method is refused before the baseline trains
    data = load_data(scenario)
    base_sc = replace(scenario, compression="none")
    key = (repr(base_sc), data.name)
    if key not in _BASELINES:
        _BASELINES[key] = run_retrieval(base_sc, progress=progress, data=data)
    baseline = _BASELINES[key]
    record = run_retrieval(scenario, progress=progress, data=data)
    section = compression_section(record, baseline, record["size"].pop("baseline_container_bytes"))
    master = record.pop("master_quality", None)
    if master is not None:
        m = section["gate_metric"]
        section[f"{m}_fp32_master"] = master[m]
        section[f"{m}_delta_vs_master"] = record["quality"][m] - master[m]
        section["master_note"] = "same trained weights before post-training compression"
    record["compression"] = section
    return record


def run_compression(scenario: Scenario, progress: bool = False) -> dict[str, Any]:
    """Run ``scenario`` and its fp32 baseline on the same data and seed; the record gets "compression"."""
    if scenario.model.spec.task == "retrieval":
        return _run_retrieval_compression(scenario, progress)
    from recsys_impls.data.loader import prepare
    from recsys_impls.runner import run_scenario

    prepared = prepare(scenario, streaming=True)  # both runs draw the same per-step batches
    sc, data = prepared
    base_sc = replace(sc, compression="none")
    key = (repr(base_sc), data.name, data.train.batch_size, data.eval.batch_size)
    if key not in _BASELINES:
        _BASELINES[key] = run_scenario(base_sc, progress=progress, prepared=(base_sc, data))
    baseline = _BASELINES[key]
    if sc.compression in ("", "none"):
        return baseline
    record = run_scenario(sc, progress=progress, prepared=prepared, after_train=post_training_effect)
    section = compression_section(record, baseline, baseline_stored_bytes(sc.model, sc.train.seed))
    master = record.pop("master_quality", None)
    if master is not None:
        section["auc_fp32_master"] = master["auc"]
        section["auc_delta_vs_master"] = record["quality"]["auc"] - master["auc"]
        section["master_note"] = master["note"]
    record["compression"] = section
    return record


def distributed_section(record: dict[str, Any], scenario: Scenario, mode: str, timeout_s: float | None = None,
                        master: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``compression`` section of a distributed compressed run (``mode``: ddp, mwms or sharded): its fp32
    baseline is the same scenario with compression none, run by the same launcher with the same parallel
    plan, data and seed (cached per process like the one-process baselines), and the section is built by
    ``compression_section`` as the one-process run builds it. A retrieval model's rank 0 measures the fp32
    model in the same container (``size["baseline_container_bytes"]``) and its float32 master weights'
    quality (``master``); the ranking models' master-weight figures need the trained weights in the parent
    process and are not produced here."""
    from recsys_impls.parallel.run import run_distributed

    base_sc = replace(scenario, compression="none")
    key = ("distributed", repr(base_sc))
    if key not in _BASELINES:
        out = run_distributed(base_sc, timeout_s)
        _BASELINES[key] = {"quality": out["quality"], "size": out["size"],
                           "throughput": {"train_samples_per_s": out["parallel"]["train_samples_per_s"]}}
    container = record["size"].pop("baseline_container_bytes", None)
    section = compression_section(record, _BASELINES[key],
                                  container or baseline_stored_bytes(scenario.model, scenario.train.seed))
    section["baseline_run"] = f"{base_sc.parallel} with compression none: same launcher, data and seed"
    section["trained"] = ("sharded: the compressed stage's tables sharded over the ranks, ids mapped before the "
                          "lookup" if mode == "sharded" else
                          "data parallel: every rank trains the same compressed float32 master weights; "
                          "post-training methods are applied to them after training")
    if master is not None:
        m = section["gate_metric"]
        section[f"{m}_fp32_master"] = master.get(m)
        if master.get(m) is not None and record["quality"].get(m) is not None:
            section[f"{m}_delta_vs_master"] = record["quality"][m] - master[m]
        section["master_note"] = "same trained weights before post-training compression"
    return section
