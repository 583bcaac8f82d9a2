"""Helpers the asv benchmarks share: per-process caches, record files, skip reasons.

Kept in the library (not benchmarks/) so asv discovery stays cheap and the logic is testable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from recsys_impls.config import PRESETS, Scenario, build_scenario
from recsys_impls.errors import ScenarioUnsupported

# asv's scenario size for quick runs: the "tiny" preset, shortened. Small on purpose: the whole
# suite must finish in minutes on two cores. Bigger shapes come from the "dlrm-ref" timing params.
QUICK_TRAIN = {"steps": 120, "batch_size": 256, "eval_samples": 20000, "latency_batches": 30}


# `python -m recsys_impls bench --quick` sets RECSYS_BENCH_QUICK=1: the expensive suites then run a
# representative subset (asv parameters stay fixed, the rest show as skipped with this reason).
QUICK_ENV = "RECSYS_BENCH_QUICK"
QUICK_PARALLEL = {("torch", "ddp:2"), ("torch", "sharded:2:table-wise"), ("torch", "sharded:2:row-wise"),
                  ("tf", "ddp:2")}


def quick_mode() -> bool:
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def quick_skip_reason(in_quick_subset: bool) -> str | None:
    """Why a scenario is not run in a quick run, or None when it runs."""
    if quick_mode() and not in_quick_subset:
        return f"not in the quick subset ({QUICK_ENV}=1); the full suite (nightly) runs it"
    return None


def ranking_models() -> list[str]:
    """The asv ``model`` parameter: every registered ranking model (from the model registry)."""
    from recsys_impls.models import models

    return [m.name for m in models("ranking")]


def all_models() -> list[str]:
    """The asv ``model`` parameter of suites every model takes part in (ranking and retrieval)."""
    from recsys_impls.models import model_names

    return list(model_names())


def compression_or_skip(model: str, method: str) -> None:
    """NotImplementedError (asv: skipped) with the model's reason for a compression method it does not take
    (the retrieval models: MLP pruning, int8 MLPs)."""
    from recsys_impls.compression.spec import parse_compression
    from recsys_impls.models import model_spec

    why = model_spec(model).compression_reason(parse_compression(method).methods)
    if why:
        raise NotImplementedError(f"model {model}: --compression {method}: {why}")


# The model the quick subset runs; the full suite runs every registered model.
QUICK_MODEL = "dlrm"

# Model fields a preset's shape gets with a model, where the model's defaults do not fit that shape (the
# tiny preset's concatenated width is 432: a rank-512 cross layer would be wider than its input).
MODEL_SHAPE = {("dcnv2", "tiny"): {"cross_rank": 64}}


def model_or_skip(model: str, axis: str | None = None) -> None:
    """NotImplementedError (asv: skipped) for a model outside the quick subset in a quick run, or one whose
    spec gives a reason to skip ``axis`` (e.g. "compression", "device")."""
    reason = quick_skip_reason(model == QUICK_MODEL)
    if reason:
        raise NotImplementedError(f"model {model}: {reason}")
    if axis is not None:
        from recsys_impls.models import model_spec

        why = model_spec(model).axis_reason(axis)
        if why:
            raise NotImplementedError(f"model {model}: {axis}: {why}")


def with_model(scenario: Scenario, model: str, preset: str = "tiny") -> Scenario:
    """``scenario`` with ``model``'s architecture (its training defaults, and the shape fields ``preset``
    needs for it: MODEL_SHAPE), everything else kept; for suites that build their scenario themselves."""
    if model == scenario.model.arch:
        return scenario
    return build_scenario({"model": {"arch": model, **MODEL_SHAPE.get((model, preset), {})}}, base=scenario)


def repo_root() -> Path:
    """The asv config directory (asv sets ASV_CONF_DIR), else this checkout's root."""
    return Path(os.environ.get("ASV_CONF_DIR") or Path(__file__).resolve().parents[1])


def machine_name() -> str:
    if os.environ.get("RECSYS_MACHINE"):
        return os.environ["RECSYS_MACHINE"]
    from recsys_impls.measure.fingerprint import machine_name as suggested

    return suggested()


def records_dir() -> Path:
    """Where full records are stored beside asv's results: .asv/records/<machine>/<commit>/."""
    return records_dir_for(repo_root(), machine_name(), os.environ.get("ASV_COMMIT", "uncommitted"))


def records_dir_for(root: Path, machine: str, commit: str) -> Path:
    return root / ".asv" / "records" / machine / commit


def failed_records(folder: Path, since: float = 0.0) -> list[tuple[str, str]]:
    """(record file stem, error) of each failed record in ``folder`` written at or after ``since`` (a time
    stamp): what one ``bench`` run failed, not what an earlier run at the same commit left."""
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            if path.stat().st_mtime < since:
                continue
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            out.append((path.stem, "unreadable record file"))
            continue
        if isinstance(record, dict) and record.get("status") == "failed":
            out.append((path.stem, str(record.get("error") or "no reason recorded")))
    return out


def slug(parts: dict[str, Any]) -> str:
    text = "-".join(f"{k}={v}" for k, v in parts.items())
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def save_record(record: dict[str, Any], suite: str, params: dict[str, Any]) -> Path:
    """Write one record (with the asv benchmark it feeds) for the report to read."""
    out = records_dir()
    out.mkdir(parents=True, exist_ok=True)
    record = dict(record, asv={"suite": suite, "params": {k: str(v) for k, v in params.items()},
                               "machine": machine_name(), "commit": os.environ.get("ASV_COMMIT")})
    path = out / f"{suite}--{slug(params)}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return path


def scenario_for(framework: str, data: str = "synthetic", preset: str = "tiny", model: str | None = None,
                 **axes: Any) -> Scenario:
    """A benchmark scenario: preset shape (with ``model``'s architecture if given), quick training length,
    given axes."""
    layers = {k: dict(v) for k, v in PRESETS[preset].items()}
    if model is not None:
        layers.setdefault("model", {}).update({"arch": model, **MODEL_SHAPE.get((model, preset), {})})
    layers.setdefault("train", {}).update(QUICK_TRAIN if preset == "tiny" else {})
    layers.setdefault("data", {})["source"] = data
    layers["scenario"] = {"framework": framework, **{k: str(v) for k, v in axes.items()}}
    return build_scenario(layers)


def run_and_record(suite: str, params: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """Run a scenario for a track_ benchmark; a failure becomes a record with its reason.

    One scenario failing never loses the others: the caller stores every record it gets. A signal (asv's
    timeout SIGTERM, or ``bench`` being interrupted) is not a failure: under the signal policy it ends the
    scenario's worker processes and run folder, and propagates.
    """
    from recsys_impls import signals
    from recsys_impls.execute import execute_or_record

    with signals.policy():
        record = execute_or_record(scenario).to_plain()
    save_record(record, suite, params)
    return record


def record_grid(suite: str, names: tuple[str, ...], combos: Iterable[tuple[Any, ...]],
                build: Callable[..., Scenario]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """One record per parameter combination, for an asv ``setup_cache``: ``build(*combo)`` makes the
    scenario or raises NotImplementedError, and then the combination is recorded as skipped with the reason."""
    records: dict[tuple[Any, ...], dict[str, Any]] = {}
    for combo in combos:
        try:
            scenario = build(*combo)
        except NotImplementedError as exc:
            records[combo] = {"status": "skipped", "error": str(exc)}
            continue
        records[combo] = run_and_record(suite, dict(zip(names, combo, strict=True)), scenario)
    return records


class ScenarioFailed(RuntimeError):
    """Raised in an asv ``setup`` for a scenario that failed: asv then shows its benchmarks as failed,
    ``bench`` exits non-zero and ``reports regressions`` counts a number turning into a failure."""


def require_ok(record: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a scenario that ran, for an asv ``setup``.

    asv shows a benchmark whose setup raises NotImplementedError as skipped and any other exception as
    failed: a skipped record (unsupported here, outside the quick subset) raises the first, a failed one
    (or none at all: the scenario was lost) the second, with the record's reason.
    """
    if record is None:
        raise ScenarioFailed("scenario was not run: setup_cache left no record for it")
    status = record.get("status")
    if status == "ok":
        return record
    if status == "skipped":
        raise NotImplementedError(record.get("error") or "scenario skipped")
    raise ScenarioFailed(record.get("error") or f"scenario failed (status {status!r})")


def skip(reason: str) -> Exception:
    """The exception that makes asv skip one benchmark from inside its body (a plain
    NotImplementedError only skips from setup; raised in the body asv counts it as a failure)."""
    try:
        from asv_runner.benchmarks.mark import SkipNotImplemented
    except ImportError:  # outside asv
        return NotImplementedError(reason)
    return SkipNotImplemented(reason)


def framework_or_skip(framework: str) -> None:
    from recsys_impls.registry import framework_available

    if not framework_available(framework):
        raise NotImplementedError(f"framework {framework} is not installed")


_TIMING_CACHE: dict[Any, Any] = {}


def timing_fixture(framework: str, preset: str, n_batches: int = 8, batch_size: int | None = None,
                   model: str | None = None, compression: str = "none",
                   **device: Any) -> tuple[Any, list[Any], list[Any]]:
    """(model, staged batches) built once per process for time_* benchmarks (and ``compare``).

    Several distinct batches are rotated: re-using one batch keeps embedding rows in cache and made
    lookups look about 2x faster on the CI machine.
    """
    key = (framework, preset, n_batches, batch_size, model, compression, tuple(sorted(device.items())))
    if key not in _TIMING_CACHE:
        framework_or_skip(framework)
        from dataclasses import replace

        from recsys_impls import registry
        from recsys_impls.data.loader import load_dataset

        scenario = scenario_for(framework, "synthetic", preset, model=model)
        if batch_size:
            scenario = replace(scenario, train=replace(scenario.train, batch_size=batch_size))
        if device:
            scenario = replace(scenario, device=replace(scenario.device, **device)).validate()
        if compression != "none":
            scenario = replace(scenario, compression=compression).validate()
        try:
            impl = registry.build(scenario)
        except ScenarioUnsupported as exc:
            raise NotImplementedError(str(exc)) from None
        bs = scenario.train.batch_size
        data = load_dataset(scenario, num_train=bs * n_batches, num_eval=bs)
        batches = data.train.split(bs)
        staged = [impl.stage(b) for b in batches]
        _TIMING_CACHE[key] = (impl, staged, batches)
    return _TIMING_CACHE[key]


def roofline_figure(record: dict[str, Any], phase: str, key: str) -> float:
    """One figure of a record's roofline score for ``phase`` ("train" or "infer"), or asv's skip with why."""
    section = record.get("roofline") or {}
    score = section.get(phase)
    if not isinstance(score, dict) or score.get(key) is None:
        raise skip(section.get("reason") or f"no roofline score for {phase} in this record")
    return float(score[key])
