"""The MLPerf LoadGen driver: one runtime behind the dynamic batcher, under SingleStream, Offline or Server.

LoadGen (``mlcommons-loadgen``, imported as ``mlperf_loadgen``) decides when queries arrive and judges
the run; this module only answers them. A sample is one row of a held-out set already in the serving
layout (in memory, so loading costs nothing in the timed run). LoadGen's own ``mlperf_log_summary.txt``
and ``mlperf_log_detail.txt`` are written to the run's folder and kept; the figures are read back from
the detail log's ``:::MLLOG`` JSON lines, and VALID/INVALID is LoadGen's verdict.

* SingleStream: one sample per query, the next issued when the last completes; figure: p90 latency.
* Offline: every sample at once; figure: samples/s.
* Server: Poisson arrivals at ``target_qps``; VALID needs the p99 latency within the bound
  (``latency_bound_ms``, default 10 ms on CPU). ``server_search`` finds the highest QPS that is VALID.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls.errors import UsageError
from recsys_impls.serving.batcher import DynamicBatcher
from recsys_impls.serving.layout import ServingInputs
from recsys_impls.serving.runtimes import Runtime

SCENARIOS = ("SingleStream", "Offline", "Server")
DEFAULT_LATENCY_BOUND_MS = 10.0


@dataclass(frozen=True)
class LoadSettings:
    """What LoadGen is told (durations short enough for tests and benchmarks: MLPerf's own minimum is 600 s)."""

    min_duration_ms: int = 2000
    min_query_count: int = 100
    max_duration_ms: int = 60000
    target_qps: float = 100.0  # Server arrivals; Offline's expected throughput is set from it too
    latency_bound_ms: float = DEFAULT_LATENCY_BOUND_MS
    max_batch: int = 256
    max_wait_ms: float = 1.0
    seed: int = 0

    def check(self) -> LoadSettings:
        if not 1 <= self.min_query_count <= 10**8 or not 1 <= self.min_duration_ms <= self.max_duration_ms:
            raise UsageError(f"loadgen: min queries {self.min_query_count}, min duration {self.min_duration_ms} ms, "
                             f"max duration {self.max_duration_ms} ms; accepted: >= 1 and min <= max")
        if not 0 < self.target_qps <= 1e7 or not 0 < self.latency_bound_ms <= 1e5:
            raise UsageError(f"loadgen: target QPS {self.target_qps}, latency bound {self.latency_bound_ms} ms; "
                             "accepted: QPS in (0, 1e7], bound in (0, 1e5] ms")
        return self


def _lg() -> Any:
    try:
        import mlperf_loadgen
    except ImportError:
        from recsys_impls.errors import ScenarioUnsupported

        raise ScenarioUnsupported("LoadGen: package 'mlcommons-loadgen' (mlperf_loadgen) is not installed") from None
    return mlperf_loadgen


def warm_up(runtime: Runtime, samples: ServingInputs, max_batch: int) -> None:
    """Requests of 1, 2 and ``max_batch`` samples before LoadGen starts: a compiling runtime
    (torch.compile specialises size-1 axes) then compiles here, not inside the timed run."""
    for size in sorted({1, min(2, max_batch), max_batch}):
        runtime.predict(samples.take(np.arange(size) % samples.batch_size))


def calibrate(runtime: Runtime, samples: ServingInputs, repeats: int = 10) -> float:
    """Median seconds of a one-sample request (warm), through the one timed loop.

    LoadGen fixes a SingleStream run's query count up front from the expected latency it is told; told
    too slow, the run ends before its minimum duration and is INVALID.
    """
    from recsys_impls.measure.loop import timed_loop

    one = [samples.take([i % samples.batch_size]) for i in range(repeats)]
    return float(np.median(timed_loop(runtime.predict, one, warmup=2, steps=repeats, start=0).step_seconds))


def _test_settings(lg: Any, scenario: str, s: LoadSettings, expected: dict[str, float]) -> Any:
    ts = lg.TestSettings()
    ts.scenario = {"SingleStream": lg.TestScenario.SingleStream, "Offline": lg.TestScenario.Offline,
                   "Server": lg.TestScenario.Server}[scenario]
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = s.min_duration_ms
    ts.max_duration_ms = s.max_duration_ms
    ts.min_query_count = s.min_query_count
    ts.server_target_qps = s.target_qps
    ts.server_target_latency_ns = int(s.latency_bound_ms * 1e6)
    ts.offline_expected_qps = expected.get("offline_qps", s.target_qps)
    ts.single_stream_expected_latency_ns = max(1000, int(expected.get("single_latency_s", 1e-3) * 1e9))
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = s.seed
    return ts


def read_detail_log(path: Path) -> dict[str, Any]:
    """The ``:::MLLOG`` entries of a LoadGen detail log as {key: value} (last one wins)."""
    out: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":::MLLOG" not in line:
            continue
        try:
            entry = json.loads(line.split(":::MLLOG", 1)[1])
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "key" in entry:
            out[str(entry["key"])] = entry.get("value")
    return out


def _figures(scenario: str, log: dict[str, Any]) -> dict[str, Any]:
    def ms(key: str) -> float | None:
        v = log.get(key)
        return float(v) / 1e6 if isinstance(v, (int, float)) else None

    out = {
        "valid": log.get("result_validity") == "VALID",
        "validity": log.get("result_validity"),
        "latency_ms": {"min": ms("result_min_latency_ns"), "mean": ms("result_mean_latency_ns"),
                       "p50": ms("result_50.00_percentile_latency_ns"),
                       "p90": ms("result_90.00_percentile_latency_ns"),
                       "p99": ms("result_99.00_percentile_latency_ns"), "max": ms("result_max_latency_ns")},
        "samples_per_s": log.get("result_samples_per_second"),
        "completed_samples_per_s": log.get("result_completed_samples_per_sec"),
        "scheduled_samples_per_s": log.get("result_scheduled_samples_per_sec"),
        "min_duration_met": log.get("result_min_duration_met"),
        "min_queries_met": log.get("result_min_queries_met"),
        "perf_constraints_met": log.get("result_perf_constraints_met"),
        "early_stopping_met": log.get("early_stopping_met"),
    }
    if scenario == "SingleStream":
        out["figure"] = {"name": "p90_latency_ms", "value": out["latency_ms"]["p90"]}
    elif scenario == "Offline":
        out["figure"] = {"name": "samples_per_s", "value": out["samples_per_s"]}
    else:
        out["figure"] = {"name": "p99_latency_ms", "value": out["latency_ms"]["p99"]}
    return out


def run(runtime: Runtime, samples: ServingInputs, scenario: str, settings: LoadSettings,
        log_dir: Path) -> dict[str, Any]:
    """One LoadGen test; its logs go to ``log_dir``; returns the figures, the verdict and the batcher's facts.

    SingleStream is told the expected latency from a calibration, Offline starts with a short pilot; a run
    that ends before its minimum duration is run again (up to three times), told what it measured
    (``earlier_tries`` keeps their figures).
    """
    if scenario not in SCENARIOS:
        raise UsageError(f"--scenario {scenario[:60]!r}: accepted: {', '.join(SCENARIOS)}")
    settings.check()
    lg = _lg()
    # SingleStream has one sample in flight: a wait could only add latency.
    settings = replace(settings, max_wait_ms=0.0) if scenario == "SingleStream" else settings
    warm_up(runtime, samples, settings.max_batch)
    expected: dict[str, float] = {}
    if scenario == "SingleStream":
        cal = calibrate(runtime, samples)
        expected = {"single_latency_s": cal / 2}  # told faster than calibrated: more queries, not too few
    elif scenario == "Offline":
        # A pilot of about 1000 samples: LoadGen's own per-sample cost decides Offline throughput for a
        # small model, so a calibration of the runtime alone would overstate it several times.
        expected = {"offline_qps": max(1000, settings.min_query_count) / (settings.min_duration_ms / 1e3)}
    out = _run_once(lg, runtime, samples, scenario, settings, log_dir, expected)
    tries: list[dict[str, Any]] = []
    # A short pilot underestimates throughput (fixed costs weigh more): up to three more tries.
    while scenario != "Server" and out["min_duration_met"] is False and len(tries) < 3:
        tries.append({k: out[k] for k in ("validity", "samples_per_s", "latency_ms", "wall_s")}
                     | {"expected": expected})
        lat = out["latency_ms"]["mean"]
        expected = {"offline_qps": 2.5 * (out["samples_per_s"] or expected.get("offline_qps", 1000.0)),
                    "single_latency_s": 0.7 * lat / 1e3 if lat else expected.get("single_latency_s", 1e-3) / 2}
        out = _run_once(lg, runtime, samples, scenario, settings, log_dir, expected)
    if tries:
        out["earlier_tries"] = tries
    return out


def _run_once(lg: Any, runtime: Runtime, samples: ServingInputs, scenario: str, settings: LoadSettings,
              log_dir: Path, expected: dict[str, float]) -> dict[str, Any]:
    log_dir.mkdir(parents=True, exist_ok=True)

    def complete(ids: list[int], _probs: Any) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    batcher = DynamicBatcher(runtime.predict, samples, complete, settings.max_batch, settings.max_wait_ms / 1e3)
    sut = lg.ConstructSUT(lambda qs: batcher.submit([(q.id, q.index) for q in qs]), lambda: None)
    n = samples.batch_size
    qsl = lg.ConstructQSL(n, n, lambda _idx: None, lambda _idx: None)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    started = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut, qsl, _test_settings(lg, scenario, settings, expected), log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        batcher.close()
    wall = time.perf_counter() - started
    out = {"scenario": scenario, "settings": asdict(settings), "wall_s": wall, "batcher": batcher.describe(),
           "expected": expected or None, "log_dir": str(log_dir),
           "log_files": sorted(p.name for p in log_dir.glob("mlperf_log_*"))}
    out.update(_figures(scenario, read_detail_log(log_dir / "mlperf_log_detail.txt")))
    return out


def server_search(runtime: Runtime, samples: ServingInputs, settings: LoadSettings, log_dir: Path,
                  start_qps: float, tries: int = 8) -> dict[str, Any]:
    """The highest Server QPS LoadGen judges VALID (p99 within the bound): doubling up from ``start_qps``
    until a run fails, then bisecting between the last VALID and the first INVALID one."""
    attempts: list[dict[str, Any]] = []

    def attempt(qps: float) -> bool:
        res = run(runtime, samples, "Server", replace(settings, target_qps=qps), log_dir / f"qps-{qps:.1f}")
        attempts.append({"target_qps": qps, "valid": res["valid"], "p99_ms": res["latency_ms"]["p99"],
                         "completed_samples_per_s": res["completed_samples_per_s"],
                         "mean_batch": res["batcher"]["mean_batch"], "log_dir": res["log_dir"]})
        return res["valid"]

    lo, hi, qps = 0.0, None, max(start_qps, 1.0)
    floor = qps / 8  # below that a run of min_query_count queries takes long and says little more
    for _ in range(tries):
        if attempt(qps):
            lo = qps
            qps = qps * 2 if hi is None else (lo + hi) / 2
        else:
            hi = qps
            qps = (lo + hi) / 2 if lo else qps / 2
        if (hi is not None and lo and hi / lo < 1.1) or (not lo and qps < floor):
            break
    out = {"max_valid_qps": lo or None, "first_invalid_qps": hi, "latency_bound_ms": settings.latency_bound_ms,
           "attempts": attempts, "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms}
    if not lo:
        out["reason"] = (f"no run down to {min(a['target_qps'] for a in attempts):.3g} QPS met "
                         f"p99 <= {settings.latency_bound_ms:g} ms (lowest p99: "
                         f"{min((a['p99_ms'] for a in attempts if a['p99_ms'] is not None), default=None)} ms)")
    return out
