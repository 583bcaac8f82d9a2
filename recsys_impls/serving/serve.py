"""``serve`` end to end: the scenario's model (trained, or the seeded start with 0 steps), its export (made
here, or an existing one whose manifest must match the model), a runtime, LoadGen scenarios, one record.

Output folder layout: ``record.json``; ``export/`` (when exported here); ``loadgen/<Scenario>/`` with
LoadGen's summary and detail logs (``loadgen/Server-search/qps-*/`` for the QPS search).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recsys_impls.config import Scenario
from recsys_impls.record import Record, timestamp
from recsys_impls.serving import loadgen
from recsys_impls.serving import manifest as mf
from recsys_impls.serving.export import TrainedModel, check_compression, check_out_dir, export_all, train_model
from recsys_impls.serving.formats import check_runtime
from recsys_impls.serving.layout import to_padded

DEFAULT_SAMPLES = 4096


def parse_scenarios(text: str) -> tuple[str, ...]:
    from recsys_impls.errors import UsageError

    names = loadgen.SCENARIOS if text == "all" else tuple(t.strip() for t in text.split(",") if t.strip())
    for name in names or ("",):
        if name not in loadgen.SCENARIOS:
            raise UsageError(f"--scenario {name[:60]!r}: accepted: {', '.join(loadgen.SCENARIOS)} "
                             "(comma-separated) or all")
    return names


def _export_for(model: TrainedModel, fmt: str, out_dir: Path, export_dir: Path | None,
                threads: int) -> tuple[Path, dict[str, Any]]:
    """The folder holding ``fmt`` for this model and its manifest: ``export_dir`` checked, or a new export."""
    checksum = mf.params_checksum(model.params)
    if export_dir is not None:
        man = mf.load(export_dir, fmt)
        mf.check_matches(man, model.scenario.framework, model.scenario.model, checksum,
                         f"--export-dir {export_dir}")
        return export_dir, man
    target = out_dir / "export"
    return target, export_all(model, (fmt,), target, force=True, threads=threads)[fmt]


def serve(scenario: Scenario, steps: int, runtime: str, scenarios: tuple[str, ...], settings: loadgen.LoadSettings,
          out_dir: Path, export_dir: Path | None = None, force: bool = False, search: bool = False,
          samples: int = DEFAULT_SAMPLES, progress: bool = False) -> Record:
    """Run ``scenarios`` against ``runtime`` and return the record (also saved as ``out_dir/record.json``)."""
    from recsys_impls import threads as thread_policy

    started = time.time()
    fmt = check_runtime(runtime, scenario.framework)
    settings.check()
    from recsys_impls.serving.runtimes import check_available

    check_available(runtime)
    if fmt is not None:
        check_compression(scenario.compression, (fmt,))
    check_out_dir(out_dir, force)
    if export_dir is not None and fmt is not None:
        mf.load(export_dir, fmt)  # missing or unreadable: one line before any training
    model = train_model(scenario, steps, progress)
    threads = thread_policy.resolve(scenario.device.threads).intra_op
    man = None
    if fmt is not None:
        export_dir, man = _export_for(model, fmt, out_dir, export_dir, threads)
    rt = build_runtime(model, runtime, export_dir)
    data = to_padded(model.held_out(samples))
    results, search_result = measure(rt, data, scenarios, settings, out_dir / "loadgen", search)
    record = make_record(model, rt, man, export_dir, data.batch_size, results, search_result, started)
    record.save(out_dir / "record.json")
    return record


def build_runtime(model: TrainedModel, runtime: str, export_dir: Path | None) -> Any:
    from recsys_impls import threads as thread_policy
    from recsys_impls.serving import runtimes

    threads = thread_policy.resolve(model.scenario.device.threads).intra_op
    return runtimes.build(runtime, model.scenario.framework, export_dir, threads, impl=model.impl)


def measure(rt: Any, data: Any, scenarios: tuple[str, ...], settings: loadgen.LoadSettings, log_root: Path,
            search: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Each LoadGen scenario once, then (``search``) the Server QPS search, started from a quarter of the
    Offline throughput when that was measured."""
    results = {name: loadgen.run(rt, data, name, settings, log_root / name) for name in scenarios}
    if not search:
        return results, None
    offline = results.get("Offline", {}).get("samples_per_s")
    start = 0.25 * offline if offline else settings.target_qps
    return results, loadgen.server_search(rt, data, settings, log_root / "Server-search", start)


def make_record(model: TrainedModel, rt: Any, man: dict[str, Any] | None, export_dir: Path | None, samples: int,
                results: dict[str, Any], search_result: dict[str, Any] | None, started: float) -> Record:
    """The serving record: the model's scenario, the runtime, the export's manifest facts, LoadGen's figures."""
    from recsys_impls import threads as thread_policy
    from recsys_impls.measure import fingerprint

    section = {
        "runtime": rt.describe(),
        "export": None if man is None else {k: man.get(k) for k in (
            "format", "exporter", "opset", "parity", "stored_bytes", "params_checksum", "git_commit")},
        "export_dir": None if export_dir is None else str(export_dir),
        "samples": samples,
        "trained_steps": model.steps,
        "scenarios": results,
        "server_search": search_result,
        "all_valid": all(r["valid"] for r in results.values()),
    }
    record = Record.new(model.scenario, kind="serving", serving=section, env=fingerprint.environment_fingerprint())
    record["threads"] = thread_policy.record_section(model.scenario.framework)
    record["duration_s"] = time.time() - started
    record["timestamp"] = timestamp(started)
    return record.cleaned()


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What ``serve`` prints: one line per LoadGen scenario, then the QPS search."""
    s = record["serving"]
    lines = [f"runtime {s['runtime']['runtime']} ({record['framework']}), {s['samples']} samples"]
    if s["export"]:
        p = s["export"]["parity"] or {}
        lines.append(f"export {s['export']['format']}: parity max abs diff {p.get('max_abs_diff')} "
                     f"(ok: {p.get('ok')}), {s['export']['stored_bytes']} bytes")
    for name, r in s["scenarios"].items():
        fig = r["figure"]
        lines.append(f"{name}: {r['validity']} {fig['name']} {fig['value']} (p99 {r['latency_ms']['p99']} ms, "
                     f"mean batch {r['batcher']['mean_batch']:.1f})")
    if s["server_search"]:
        q = s["server_search"]
        lines.append(f"Server search: max VALID QPS {q['max_valid_qps']} at p99 <= {q['latency_bound_ms']} ms "
                     f"({len(q['attempts'])} runs)")
    return lines
