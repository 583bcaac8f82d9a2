"""Roofline score of a measured step: how close it came to what this machine's measured peaks allow.

The attainable time of a step is max(flops / peak FLOP/s, bytes / peak bytes/s): the step cannot finish
before its arithmetic at the GEMM peak, nor before its memory traffic at the STREAM triad bandwidth. The
larger term names the bound; fraction = attainable time / measured time (equivalently achieved rate over
the bound's attainable rate), 1.0 meaning the step ran at the roofline. The compute peak follows the
precision: bf16 GEMMs for amp-bf16 / amp-fp16 (fp16 tensor cores run at the bf16 rate), TF32 GEMMs for
tf32 where measured (CUDA), fp32 otherwise. A fraction above 1.05 cannot happen if the work model and
the timer are right, so it is flagged.
"""

from __future__ import annotations

import math
from typing import Any

from recsys_impls.config import ModelConfig
from recsys_impls.workmodel import AMP_PRECISIONS, Work, work_per_step

FLAG_ABOVE = 1.05
FLAG_KIND = "roofline-above-1.05"


def compute_peak(peaks: dict[str, Any], precision: str) -> tuple[str, float]:
    """(peak key, FLOP/s) of the GEMM peak a step at ``precision`` is measured against."""
    key = "gemm_fp32_flops_per_s"
    if precision in AMP_PRECISIONS:
        key = "gemm_bf16_flops_per_s"
    elif precision == "tf32" and peaks.get("gemm_tf32_flops_per_s"):
        key = "gemm_tf32_flops_per_s"
    return key, _positive(peaks, key)


def _positive(peaks: dict[str, Any], key: str) -> float:
    v = peaks.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"roofline: peaks[{key!r}] = {v!r}; need a positive measured figure")
    return float(v)


def score(work: Work, step_seconds: float, peaks: dict[str, Any], precision: str = "fp32") -> dict[str, Any]:
    """The Score of one step (record["roofline"]["train"|"infer"]) from its work and measured seconds."""
    if not isinstance(step_seconds, (int, float)) or not math.isfinite(step_seconds) or step_seconds <= 0:
        raise ValueError(f"roofline: step_seconds = {step_seconds!r}; need a positive measured time")
    peak_key, peak_flops = compute_peak(peaks, precision)
    peak_bytes = _positive(peaks, "mem_triad_bytes_per_s")
    flops, nbytes = work.flops, work.bytes_total
    emb = work.embedding_bytes_read + work.embedding_bytes_written
    compute_s, memory_s = flops / peak_flops, nbytes / peak_bytes
    bound = "compute" if compute_s >= memory_s else "memory"
    attainable_s = max(compute_s, memory_s)
    fraction = attainable_s / step_seconds
    flag = None
    if fraction > FLAG_ABOVE:
        flag = (f"roofline fraction {fraction:.2f} > {FLAG_ABOVE}: the step ran faster than the {bound} bound "
                f"allows ({attainable_s * 1e3:.3g} ms attainable, {step_seconds * 1e3:.3g} ms measured); "
                "the work model over-counts or the timer is wrong")
    return {
        "flops_per_step": flops,
        "bytes_per_step": nbytes,
        "intensity_flops_per_byte": flops / nbytes if nbytes else None,
        "achieved_flops_per_s": flops / step_seconds,
        "achieved_bytes_per_s": nbytes / step_seconds,
        "peak_flops_per_s": peak_flops,
        "peak_bytes_per_s": peak_bytes,
        "bound": bound,
        "fraction": fraction,
        "flag": flag,
        "compute_peak": peak_key,
        "attainable_s": attainable_s,
        "step_s": float(step_seconds),
        # embedding rows moved per second of the whole step, against the measured bandwidth: a lower bound of
        # the lookups' own bandwidth (the step also runs the MLPs)
        "embedding_bytes_per_s": emb / step_seconds,
        "embedding_bandwidth_fraction": emb / step_seconds / peak_bytes,
    }


def roofline_section(model: ModelConfig, batch_size: int, optimizer: str, precision: str, compression: str,
                     train_step_s: float | None, infer_batch_s: float | None, infer_batch_size: int | None,
                     peaks: dict[str, Any]) -> dict[str, Any]:
    """record["roofline"]: the peaks used, a Score per phase (None for a phase not measured) and the work."""
    out: dict[str, Any] = {"peaks": peaks, "train": None, "infer": None, "work": {"train": None, "infer": None}}
    if train_step_s is not None:
        w = work_per_step(model, batch_size, "train", optimizer, precision, compression)
        out["train"] = score(w, train_step_s, peaks, precision)
        out["work"]["train"] = w.to_dict()
    if infer_batch_s is not None:
        if not infer_batch_size:
            raise ValueError("roofline: infer_batch_s given without infer_batch_size")
        w = work_per_step(model, infer_batch_size, "infer", optimizer, precision, compression)
        out["infer"] = score(w, infer_batch_s, peaks, precision)
        out["work"]["infer"] = w.to_dict()
    return out


def flags_from(section: dict[str, Any] | None) -> list[dict[str, str]]:
    """record["flags"] entries for the phases of a roofline section whose fraction is above 1.05."""
    flags: list[dict[str, str]] = []
    for phase in ("train", "infer"):
        s = (section or {}).get(phase)
        if isinstance(s, dict) and s.get("flag"):
            flags.append({"figure": f"roofline.{phase}", "kind": FLAG_KIND, "detail": s["flag"]})
    return flags


def attach(record: dict[str, Any], scenario: Any, threads: int | None, batch_size: int | None = None) -> None:
    """Score a record's measured train step and inference batch against this machine's peaks, in place.

    The median per-step time is what is scored (a step's typical cost, not the mean a stall inflates).
    ``batch_size`` is the samples one timed train step of *this process* handles (a rank's local batch
    in a distributed run; the scenario's batch otherwise). Sets ``record["roofline"]`` (or a reason
    when the peaks cannot be had) and appends the fraction flags to ``record["flags"]``.
    """
    from recsys_impls.measure.peaks import machine_peaks

    device = scenario.device.device
    framework = scenario.framework
    train_ms = ((record.get("train") or {}).get("step_ms") or {}).get("median")
    inf = record.get("infer") or {}
    infer_ms = (inf.get("batch_ms") or {}).get("median")
    try:
        peaks = machine_peaks(framework, "cpu" if device == "cpu" else device, threads=threads or None)
    except Exception as exc:  # noqa: BLE001 - a record without a roofline says why; its figures stay
        record["roofline"] = {"train": None, "infer": None,
                              "reason": f"machine peaks not available: {type(exc).__name__}: {exc}"[:300]}
        return
    section = roofline_section(
        scenario.model, batch_size or scenario.train.batch_size, scenario.train.optimizer,
        scenario.device.precision, scenario.compression,
        train_ms / 1e3 if train_ms else None, infer_ms / 1e3 if infer_ms else None, inf.get("batch_size"), peaks)
    section["scored_figure"] = "median per-step time"
    record["roofline"] = section
    from recsys_impls.record import add_flag

    for flag in flags_from(section):
        add_flag(record, flag["figure"], flag["kind"], flag["detail"])


INPUT_BOUND_WAIT = 0.10  # end-to-end: a window spending more than this fraction waiting for input


def input_verdict(mode: str, wait_fraction: float | None, producer_samples_per_s: float | None,
                  train_samples_per_s: float | None, bound: str | None) -> dict[str, Any]:
    """``input-bound`` / ``compute-bound`` / ``memory-bound`` for a training window, and why.

    Input-bound: end-to-end, the window waited for input more than ``INPUT_BOUND_WAIT`` of the time; or the
    pipeline alone produces fewer samples/s than training consumes (compute-only, where the wait cannot be
    seen). Otherwise the roofline's bound of the median step (None when no roofline score exists).
    """
    if mode == "end-to-end" and wait_fraction is not None and wait_fraction > INPUT_BOUND_WAIT:
        return {"verdict": "input-bound",
                "verdict_basis": f"the window waited for input {wait_fraction:.0%} of the time "
                                 f"(> {INPUT_BOUND_WAIT:.0%})"}
    if producer_samples_per_s and train_samples_per_s and producer_samples_per_s < train_samples_per_s:
        return {"verdict": "input-bound",
                "verdict_basis": f"the input pipeline alone makes {producer_samples_per_s:,.0f} samples/s, training "
                                 f"consumes {train_samples_per_s:,.0f}"}
    if bound in ("compute", "memory"):
        return {"verdict": f"{bound}-bound", "verdict_basis": "the roofline bound of the median training step"}
    return {"verdict": None, "verdict_basis": "no roofline score for the training step"}
