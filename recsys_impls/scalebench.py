"""The production-scale grid behind ``benchmarks/bench_scale.py``: presets x compression x framework.

Kept in the library (asv discovery stays cheap; the logic is testable). Each cell is one ``execute`` run
of a large preset with a row cap that fits a 24 GiB machine (``SCALE_MAX_ROWS``; ``RECSYS_SCALE_MAX_ROWS``
overrides it, ``0`` meaning the full tables, for a big machine). A cell whose memory estimate does not fit
the memory available now is skipped with the pre-flight check's one line, before anything is allocated.
The quick job (``RECSYS_BENCH_QUICK=1``) runs one short criteo-kaggle case; the rest show as skipped.
"""

from __future__ import annotations

import os
from typing import Any

from recsys_impls import benchsupport as bs
from recsys_impls.config import PRESETS, build_scenario
from recsys_impls.errors import ScenarioUnsupported, UsageError

SCALE_PRESETS = ["criteo-kaggle", "criteo-terabyte", "dlrm-v2"]
COMPRESSIONS = ["none", "fp16", "int8", "int4"]
FRAMEWORKS = ["torch", "tf"]
# Rows per table that fit this suite's 24 GiB CI machine (pre-flight estimates: criteo-kaggle in full with SGD
# about 6 GiB; the 1TB tables capped at 1M rows about 9 GiB with SGD, 13 GiB for dlrm-v2 with Adagrad);
# 0 = the full tables.
SCALE_MAX_ROWS = {"criteo-kaggle": 0, "criteo-terabyte": 1_000_000, "dlrm-v2": 1_000_000}
MAX_ROWS_ENV = "RECSYS_SCALE_MAX_ROWS"
TRAIN = {"steps": 200, "eval_samples": 32768, "latency_batches": 20}
QUICK_TRAIN = {"steps": 30, "eval_samples": 8192, "latency_batches": 5}
QUICK_CELL = ("criteo-kaggle", "none", "torch")


def max_rows(preset: str) -> int:
    """The row cap of a preset's cells (``RECSYS_SCALE_MAX_ROWS`` overrides every preset's)."""
    text = os.environ.get(MAX_ROWS_ENV, "").strip()
    if not text:
        return SCALE_MAX_ROWS[preset]
    if not text.isdigit():
        raise UsageError(f"{MAX_ROWS_ENV}={text!r} (environment); accepted: a whole number of rows, 0 for no cap")
    return int(text)


def scenario_for(preset: str, compression: str, framework: str, quick: bool | None = None) -> Any:
    """One cell's scenario: the preset, its row cap, the grid's training length."""
    quick = bs.quick_mode() if quick is None else quick
    layers = {k: dict(v) for k, v in PRESETS[preset].items()}
    layers.setdefault("train", {}).update(QUICK_TRAIN if quick else TRAIN)
    layers.setdefault("model", {})["max_rows"] = max_rows(preset)
    layers["scenario"] = {"framework": framework, "compression": compression}
    return build_scenario(layers)


def skip_reason(preset: str, compression: str, framework: str) -> str | None:
    """Why a cell does not run here (quick subset, framework missing, memory), or None."""
    quick = bs.quick_skip_reason((preset, compression, framework) == QUICK_CELL)
    if quick:
        return quick
    from recsys_impls.registry import framework_available

    if not framework_available(framework):
        return f"framework {framework} is not installed"
    from recsys_impls import preflight

    scenario = scenario_for(preset, compression, framework)
    try:
        preflight.check_framework_limits(scenario)
    except ScenarioUnsupported as exc:
        return str(exc)
    try:
        preflight.check_memory(scenario)
    except UsageError as exc:
        return f"not enough memory on this machine: {exc}"
    return None


def run_grid(presets: list[str], compressions: list[str], frameworks: list[str]) -> dict[tuple, dict[str, Any]]:
    """Every cell's record (a skipped one carries its reason)."""
    records: dict[tuple, dict[str, Any]] = {}
    for preset in presets:
        for compression in compressions:
            for framework in frameworks:
                key = (preset, compression, framework)
                why = skip_reason(*key)
                if why:
                    records[key] = {"status": "skipped", "error": why}
                    continue
                params = {"preset": preset, "compression": compression, "framework": framework}
                records[key] = bs.run_and_record("scale", params, scenario_for(*key))
    return records


def embedding_gb_per_s(record: dict[str, Any], phase: str) -> float | None:
    """Embedding bytes (rows read and written) per second of the median step (roofline work model)."""
    score = (record.get("roofline") or {}).get(phase)
    rate = score.get("embedding_bytes_per_s") if isinstance(score, dict) else None
    return rate / 1e9 if rate else None
