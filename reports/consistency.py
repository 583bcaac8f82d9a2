"""Cross-check figures one run measured two ways: asv's time_* benchmarks against the run record of
the same work (same framework, model shape, batch size, optimizer, precision, device, compression).

Why: both time the same train step / inference batch of the same model, in separate processes with
separate code paths. When they disagree by more than 2x, one of them measures something else (a
missing synchronize, a cold cache, a wrong step count), and the report and the record both say so.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.record import add_flag

KIND = "asv-vs-record-disagree"
FACTOR = 2.0
# asv benchmark -> (record section, its Stats key). asv's figure is the median seconds per call.
FIGURES = {
    "bench_core.TrainStep.time_train_step": ("train", "step_ms"),
    "bench_core.InferBatch.time_infer_batch": ("infer", "batch_ms"),
}


def _model_shape(model: dict[str, Any]) -> dict[str, Any]:
    """The fields the model's architecture reads (a record from before the model axis is a dlrm)."""
    from recsys_impls.models import model_names, model_spec

    arch = model.get("arch", "dlrm")
    if arch not in model_names():
        return model
    return {"arch": arch, **{k: model[k] for k in model_spec(arch).config_fields if k in model}}


def work_key(scenario: dict[str, Any]) -> str:
    """The work one train step / inference batch does and how it is run, as a stable string.

    Fields of Scenario.to_dict(): framework, the whole model shape, batch size, optimizer, precision,
    device, compression; also compile mode, thread count and parallel mode, which change the speed of
    the same work (so a threads:4 or torch-compile record is not compared with asv's default run).
    """
    model = dict(scenario.get("model")) if isinstance(scenario.get("model"), dict) else {}
    model = _model_shape(model)
    train = scenario.get("train") if isinstance(scenario.get("train"), dict) else {}
    device = scenario.get("device") if isinstance(scenario.get("device"), dict) else {}
    key = {
        "framework": scenario.get("framework"),
        "model": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in model.items()},
        "batch_size": train.get("batch_size"),
        "optimizer": train.get("optimizer"),
        "precision": device.get("precision", "fp32"),
        "device": device.get("device", "cpu"),
        "compile": device.get("compile", "none"),
        "threads": device.get("threads", 0),
        "compression": scenario.get("compression", "none") or "none",
        "parallel": scenario.get("parallel", "none") or "none",
    }
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def asv_work_key(benchmark: str, params: dict[str, Any]) -> str | None:
    """work_key of the scenario an asv timing benchmark runs, None for benchmarks not checked here."""
    if benchmark not in FIGURES or "framework" not in params or "preset" not in params:
        return None
    from recsys_impls.benchsupport import scenario_for
    from recsys_impls.config import PRESETS

    if params["preset"] not in PRESETS:
        return None
    model = str(params["model"]) if params.get("model") is not None else None
    return work_key(scenario_for(str(params["framework"]), "synthetic", str(params["preset"]), model=model).to_dict())


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def record_figure(record: dict[str, Any], section: str, stats_key: str) -> tuple[float, int | None, str] | None:
    """(milliseconds, n, how it was measured) of a record's step or batch time, None when absent.

    Version 2: the median of the per-step (per-batch) times. Version 1 has no per-step times: the
    mean step time of the timed window, or for inference batch_size / samples_per_s.
    """
    sec = record.get(section) if isinstance(record.get(section), dict) else {}
    stats = sec.get(stats_key)
    if isinstance(stats, dict) and _num(stats.get("median")):
        n = stats.get("n")
        unit = "step" if section == "train" else "batch"
        return float(stats["median"]), int(n) if _num(n) else None, f"median of per-{unit} times"
    if section == "train" and _num(sec.get("step_ms_mean")):
        n = sec.get("timed_steps")
        return float(sec["step_ms_mean"]), None, f"mean over a window of {n} steps (v1 record, no per-step times)"
    if section == "infer":
        thr = (record.get("throughput") or {}).get("infer_samples_per_s")
        bs = ((record.get("scenario") or {}).get("train") or {}).get("batch_size")
        if _num(thr) and thr > 0 and _num(bs):
            return 1e3 * bs / thr, None, "batch_size / infer_samples_per_s (v1 record, no per-batch times)"
    return None


def _n_text(n: int | None) -> str:
    if n is None:
        return "n unknown"
    return "single sample" if n <= 1 else f"n={n}"


def compare(asv_rows: pd.DataFrame, records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every (asv figure, record of the same work) pair of one machine and commit.

    asv_rows: rows of reports.asv_results for that machine/commit; records: (file, record) pairs.
    Each pair: figure, asv_ms, asv_n, record_ms, record_n, agree, ratio (only when both n >= 5),
    record file, and "flag" (the record flag dict) when they are more than FACTOR apart.
    """
    from reports.page import enough_samples

    by_key: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path, rec in records:
        if isinstance(rec, dict) and rec.get("status", "ok") == "ok" and isinstance(rec.get("scenario"), dict):
            by_key.setdefault(work_key(rec["scenario"]), []).append((path, rec))
    out = []
    if asv_rows.empty:
        return out
    for _, row in asv_rows.iterrows():
        if row["benchmark"] not in FIGURES or row["status"] != "ok" or not _num(row["value"]) or row["value"] <= 0:
            continue
        key = asv_work_key(row["benchmark"], row["params"])
        if key is None:
            continue
        section, stats_key = FIGURES[row["benchmark"]]
        asv_ms, asv_n = 1e3 * float(row["value"]), int(row["n"]) if _num(row["n"]) else None
        for path, rec in by_key.get(key, []):
            got = record_figure(rec, section, stats_key)
            if got is None:
                continue
            rec_ms, rec_n, how = got
            ratio = rec_ms / asv_ms
            agree = 1 / FACTOR <= ratio <= FACTOR
            both = enough_samples(asv_n, rec_n)
            figure = f"{section}.{stats_key} vs {row['benchmark']}({row['param_key']})"
            pair = {"machine": row["machine"], "commit": row["commit"], "figure": figure,
                    "record_ms": rec_ms, "record_n": rec_n, "record_how": how, "asv_ms": asv_ms, "asv_n": asv_n,
                    "ratio_record_over_asv": ratio if both else None,
                    "agree": "within 2x" if agree else "DISAGREE: more than 2x apart", "record_file": path}
            if not agree:
                apart = f"{ratio:.2f}x" if both else "more than 2x"
                caveat = "" if both else " (a figure with fewer than 5 samples: may be noise, rerun without --quick)"
                pair["flag"] = {
                    "figure": figure, "kind": KIND,
                    "detail": f"record {rec_ms:.4g} ms ({how}, {_n_text(rec_n)}) vs asv {asv_ms:.4g} ms "
                              f"(median, {_n_text(asv_n)}): {apart} apart{caveat}"}
            out.append(pair)
    return out


def _same_commit(a: str, b: str) -> bool:
    a, b = str(a), str(b)
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def _read_records(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    from reports.records import read_record

    return [(str(path), read_record(path, f"records {folder}")) for path in sorted(folder.glob("*.json"))
            if path.name != "fingerprint.json"]


def annotate_records(results_dir: str | os.PathLike[str], records_dir: str | os.PathLike[str], machine: str,
                     commit: str) -> list[dict[str, Any]]:
    """Check one machine/commit and write each disagreement into the matching record file's "flags".

    Returns the flags raised, each with the "record" file it was written to. No asv result or no
    record of the same work: nothing is flagged. Calling it twice does not duplicate flags.
    """
    from reports.asv_results import load_store

    rows = load_store(results_dir).rows
    rows = rows[(rows["machine"] == machine) & rows["commit"].map(lambda c: _same_commit(c, commit))] \
        if not rows.empty else rows
    root = Path(records_dir) / machine
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and _same_commit(p.name, commit)] \
        if root.is_dir() else []
    records = [r for folder in folders for r in _read_records(folder)]
    raised = []
    changed: dict[str, dict[str, Any]] = {}
    for pair in compare(rows, records):
        flag = pair.get("flag")
        if not flag:
            continue
        path = pair["record_file"]
        rec = changed.get(path) or next(r for p, r in records if p == path)
        if add_flag(rec, flag["figure"], flag["kind"], flag["detail"]):
            changed[path] = rec
        raised.append({**flag, "record": path})
    from recsys_impls.record import Record

    for path, rec in changed.items():
        Record(rec).save(path)
    return raised


def check_latest(rows: pd.DataFrame, records: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's view: every pair for each machine's newest asv commit, from the loaded tables."""
    from reports.asv_results import latest_per_machine

    if rows.empty or records.empty or "record" not in records:
        return []
    out = []
    latest = latest_per_machine(rows)
    for (machine, commit), sub in latest.groupby(["machine", "commit"]):
        same = [_same_commit(c, commit) for c in records["commit"]]
        recs = records[(records["machine"] == machine) & pd.Series(same, index=records.index)]
        out.extend(compare(sub, list(zip(recs["file"], recs["record"], strict=False))))
    return out
