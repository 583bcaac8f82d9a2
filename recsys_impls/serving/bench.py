"""The serving grid behind ``benchmarks/bench_serving.py``: runtime x LoadGen scenario x framework.

Each framework's model is trained once (the quick training length of the other suites), exported once
to every format its runtimes load, and each runtime runs each scenario under LoadGen. Every cell leaves
a serving record (``kind: serving``) beside asv's results; a runtime that cannot run here (no CUDA
provider, a format that does not build) leaves a skipped record with the reason.

Scenarios: ``SingleStream`` (p90 latency), ``Offline`` (samples/s), ``Server`` (the highest QPS whose p99
meets the bound, with the dynamic batcher) and ``Server-nobatch`` (the same search, batch size 1).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from recsys_impls import benchsupport as bs
from recsys_impls.record import Record

RUNTIMES = {
    "native": {"torch": "torch-eager", "tf": "tf-native"},
    "compile": {"torch": "torch-compile"},
    "exported": {"torch": "torch-export", "tf": "tf-savedmodel"},
    "aoti": {"torch": "torch-aoti"},
    "onnxruntime": {"torch": "onnxruntime", "tf": "onnxruntime"},
    "onnxruntime-int8": {"torch": "onnxruntime-int8", "tf": "onnxruntime-int8"},
}
SCENARIOS = ("SingleStream", "Offline", "Server", "Server-nobatch")
FRAMEWORKS = ("torch", "tf")
QUICK = {("native", "Offline", "torch"), ("native", "SingleStream", "torch"),
         ("onnxruntime", "Offline", "torch"), ("onnxruntime", "SingleStream", "torch")}
SUITE = "bench_serving"


def settings(quick: bool) -> Any:
    from recsys_impls.serving.loadgen import LoadSettings

    return LoadSettings(min_duration_ms=1000 if quick else 2000, min_query_count=600, max_batch=256,
                        max_wait_ms=1.0, latency_bound_ms=10.0)


def _skip_reason(kind: str, scenario: str, framework: str) -> str | None:
    if framework not in RUNTIMES[kind]:
        return f"runtime {kind}: no {framework} variant"
    return bs.quick_skip_reason((kind, scenario, framework) in QUICK)


def _cell(model: Any, kind: str, scenario: str, export_dir: Path, manifests: dict[str, Any], log_root: Path,
          quick: bool) -> Record:
    import time

    from recsys_impls.serving import serve
    from recsys_impls.serving.formats import RUNTIMES as RT_FORMATS
    from recsys_impls.serving.layout import to_padded

    started = time.time()
    name = RUNTIMES[kind][model.scenario.framework]
    fmt = RT_FORMATS[name][1]
    if fmt is not None and fmt not in manifests:
        raise manifests.get(f"error:{fmt}") or RuntimeError(f"format {fmt} was not exported")
    export_dir = export_dir / fmt if fmt else export_dir  # one folder per format (a forced export clears its own)
    rt = serve.build_runtime(model, name, export_dir if fmt else None)
    data = to_padded(model.held_out(4096))
    s = settings(quick)
    if scenario.startswith("Server"):
        s = replace(s, max_batch=1, max_wait_ms=0.0) if scenario == "Server-nobatch" else s
        from recsys_impls.serving.loadgen import calibrate, server_search

        # Start near what one request costs: a quarter of the rate one worker could answer.
        start = 0.25 / max(calibrate(rt, data), 1e-6) if scenario == "Server-nobatch" else 2000.0
        results, search = {}, server_search(rt, data, s, log_root / scenario, min(start, 20000.0), tries=6)
    else:
        results, search = serve.measure(rt, data, (scenario,), s, log_root)
    return serve.make_record(model, rt, manifests.get(fmt) if fmt else None, export_dir if fmt else None,
                             data.batch_size, results, search, started)


def grid(frameworks: tuple[str, ...] = FRAMEWORKS, quick: bool | None = None) -> dict[tuple[str, str, str], Any]:
    """Every (runtime kind, scenario, framework) cell's record (plain dicts, saved beside asv's results)."""
    from recsys_impls.registry import framework_available
    from recsys_impls.serving.export import export_all, train_model
    from recsys_impls.serving.formats import RUNTIMES as RT_FORMATS

    quick = bs.quick_mode() if quick is None else quick
    out: dict[tuple[str, str, str], Any] = {}
    for framework in frameworks:
        cells = [(k, s) for k in RUNTIMES for s in SCENARIOS]
        todo = [(k, s) for k, s in cells if _skip_reason(k, s, framework) is None]
        scenario = bs.scenario_for(framework)
        for k, s in cells:
            reason = _skip_reason(k, s, framework)
            if reason is not None:
                out[(k, s, framework)] = Record.new(scenario, status="skipped", error=reason).to_plain()
        if not todo:
            continue
        if not framework_available(framework):
            for k, s in todo:
                out[(k, s, framework)] = Record.new(scenario, status="skipped",
                                                    error=f"framework {framework} is not installed").to_plain()
            continue
        with tempfile.TemporaryDirectory(prefix="recsys-serving-") as tmp:
            tmp_path = Path(tmp)
            model = train_model(scenario, scenario.train.steps)
            manifests: dict[str, Any] = {}
            formats = sorted({RT_FORMATS[RUNTIMES[k][framework]][1] for k, _ in todo} - {None})
            for fmt in formats:
                try:
                    manifests.update(export_all(model, (fmt,), tmp_path / "export" / fmt, force=True))
                except Exception as exc:  # noqa: BLE001 - that format's cells are recorded as failed with it
                    manifests[f"error:{fmt}"] = exc
            for k, s in todo:
                try:
                    rec = _cell(model, k, s, tmp_path / "export", manifests, tmp_path / "loadgen" / k, quick)
                except Exception as exc:  # noqa: BLE001 - one cell failing never loses the others
                    rec = Record.failed(model.scenario, exc)
                rec = Record(rec)
                _keep_logs(rec, k, s, framework)
                out[(k, s, framework)] = rec.to_plain()
    for (k, s, framework), rec in out.items():
        bs.save_record(rec, SUITE, {"runtime": k, "scenario": s, "framework": framework})
    return out


def _keep_logs(record: Record, kind: str, scenario: str, framework: str) -> None:
    """Copy LoadGen's summary and detail logs beside the records (the run's folder is temporary)."""
    import shutil

    serving = record.get("serving") or {}
    runs = list((serving.get("scenarios") or {}).values())
    runs += [{"log_dir": a["log_dir"]} for a in ((serving.get("server_search") or {}).get("attempts") or [])]
    dest_root = bs.records_dir() / "loadgen" / bs.slug({"runtime": kind, "scenario": scenario,
                                                        "framework": framework})
    for run in runs:
        src = Path(run["log_dir"])
        dest = dest_root / src.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            if (src / name).is_file():
                shutil.copy2(src / name, dest / name)
        run["log_dir"] = str(dest)


def figure(record: dict[str, Any], scenario: str) -> float:
    """The cell's lower-is-better figure: SingleStream p90 seconds, Offline seconds per sample, Server
    seconds per query at the highest VALID QPS."""
    rec = bs.require_ok(record)
    serving = rec["serving"]
    if scenario.startswith("Server"):
        qps = (serving.get("server_search") or {}).get("max_valid_qps")
        if not qps:
            raise bs.ScenarioFailed(f"{scenario}: no QPS met the p99 bound")
        return 1.0 / qps
    r = serving["scenarios"][scenario]
    if scenario == "Offline":
        return 1.0 / r["samples_per_s"]
    return r["latency_ms"]["p90"] / 1e3
