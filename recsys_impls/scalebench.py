"""The production-scale grid behind ``benchmarks/bench_scale.py``: presets x compression x framework.

Kept in the library (asv discovery stays cheap; the logic is testable). Each cell is one ``execute`` run
of a large preset with a row cap that fits a 24 GiB machine (``SCALE_MAX_ROWS``; ``RECSYS_SCALE_MAX_ROWS``
overrides it, ``0`` meaning the full tables, for a big machine). A cell whose memory estimate does not fit
the memory available now is skipped with the pre-flight check's one line, before anything is allocated.
The quick job (``RECSYS_BENCH_QUICK=1``) runs one short criteo-kaggle case; the rest show as skipped.

Two nightly-only parts beside the grid: ``run_ratio_grid`` (hashing and QR at about 10x and 100x fewer rows,
with the AUC cost against fp32 on the same data) and ``lookup_bandwidth`` (forward-only pooled lookups as a
fraction of the measured memory bandwidth).
"""

from __future__ import annotations

import os
from typing import Any

from recsys_impls import benchsupport as bs
from recsys_impls.config import PRESETS, build_scenario
from recsys_impls.errors import UsageError

SCALE_PRESETS = ["criteo-kaggle", "criteo-terabyte", "dlrm-v2"]
COMPRESSIONS = ["none", "fp16", "int8", "int4"]
FRAMEWORKS = ["torch", "tf"]
# Rows per table that fit this suite's 24 GiB CI machine (criteo-kaggle in full with SGD: 2.6 GB peak RSS measured
# in PyTorch, 3.2 GB in TensorFlow; pre-flight estimates for the 1TB tables capped at 1M rows: about 9 GiB with
# SGD, 13 GiB for dlrm-v2 with Adagrad); 0 = the full tables.
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


# Lookup bandwidth (forward-only pooled lookups of criteo-kaggle against the measured memory bandwidth).
LOOKUP_IDS = ["suite", "uniform"]
LOOKUP_BATCH = 16384
LOOKUP_BATCHES = 8


def _uniform_ids(batch: Any, table_sizes: tuple[int, ...], seed: int) -> Any:
    """The batch with every id redrawn uniformly over its table: no skew, so (almost) no row repeats."""
    import numpy as np

    from recsys_impls.data.batch import Batch

    rng = np.random.default_rng(seed)
    counts = batch.lengths.sum(axis=1)
    ids = np.concatenate([rng.integers(0, n, size=c) for n, c in zip(table_sizes, counts, strict=True)])
    return Batch(dense=batch.dense, ids=ids, lengths=batch.lengths, labels=batch.labels)


def lookup_bandwidth(preset: str = "criteo-kaggle", ids: str = "suite", batch_size: int = LOOKUP_BATCH,
                     batches: int = LOOKUP_BATCHES) -> dict[str, Any]:
    """Pooled-lookup bytes per second at a preset's tables (its row cap), with the suite's Zipf-skewed ids or
    uniform ones, as a fraction of this machine's measured memory bandwidth (STREAM triad, PyTorch)."""
    from dataclasses import replace

    from recsys_impls.data.loader import prepare
    from recsys_impls.measure.peaks import machine_peaks
    from recsys_impls.torch_impl.lookup_bandwidth import pooled_lookup_rate

    if ids not in LOOKUP_IDS:
        raise UsageError(f"lookup ids {ids!r}; accepted: {', '.join(LOOKUP_IDS)}")
    scenario = scenario_for(preset, "none", "torch")
    scenario = replace(scenario, train=replace(scenario.train, batch_size=batch_size, steps=batches,
                                               eval_samples=batch_size))
    scenario, data = prepare(scenario, streaming=True)
    sizes = tuple(scenario.model.table_sizes)
    got = [data.stream.batch(i) for i in range(batches)]
    if ids == "uniform":
        got = [_uniform_ids(b, sizes, i) for i, b in enumerate(got)]
    del data
    out = pooled_lookup_rate(sizes, scenario.model.embedding_dim, got)
    peak = machine_peaks("torch").get("mem_triad_bytes_per_s")
    out.update({"preset": preset, "ids": ids, "max_rows": scenario.model.max_rows,
                "memory_bandwidth_bytes_per_s": peak, "memory_bandwidth_source": "peaks: STREAM triad (torch)",
                "fraction_of_memory_bandwidth": out["bytes_per_s"] / peak if peak else None,
                "busy_fraction_of_memory_bandwidth": (out["busy_bytes_per_s"] / peak
                                                      if peak and out["busy_bytes_per_s"] else None)})
    return out


# Hashing and QR at about 10x and 100x fewer embedding rows, with their AUC cost against fp32 on the same data
# (each cell's compression section carries its own fp32 baseline run). PyTorch only: the TF variants are the
# same methods, and the nightly budget goes to the precision grid in both frameworks.
RATIO_COMPRESSIONS = ["hash:0.1", "hash:0.01", "qr:10", "qr:100"]
RATIO_PRESET = "criteo-kaggle"


def run_ratio_grid(compressions: list[str] | None = None) -> dict[tuple, dict[str, Any]]:
    """criteo-kaggle x the row-reduction compressions, torch: each cell's record (a skipped one its reason)."""
    return run_grid([RATIO_PRESET], compressions or RATIO_COMPRESSIONS, ["torch"])


def auc_cost(record: dict[str, Any]) -> float | None:
    """fp32 AUC minus the compressed run's AUC (positive: the compression lost AUC), or None."""
    delta = (record.get("compression") or {}).get("auc_delta")
    return None if delta is None else -float(delta)
