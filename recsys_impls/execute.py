"""``execute(scenario) -> Record``: the one place that decides how a scenario runs.

Every entry point (the CLI's ``run``, every asv suite, the tests) comes through here:

* ``threads:N`` is a single-process run with N intra-op threads: the scenario is rewritten to
  ``parallel="none", device.threads=N`` and its record says so in a ``parallel`` section;
* a compressed single-process scenario runs beside its fp32 baseline on the same data
  (``compression.section``) and its record gets the ``compression`` section;
* a scenario that needs several processes goes to the launcher (``parallel.run``);
* everything else is a plain single-process run (``runner``).

Only this module imports both the runner and the parallel package, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from recsys_impls.config import Scenario
from recsys_impls.record import Record


def _parallel_plan(scenario: Scenario) -> Any:
    from recsys_impls.parallel.spec import parse_parallel

    return parse_parallel(scenario.parallel or "none")


def in_one_process(scenario: Scenario) -> Scenario:
    """The scenario as one process runs it: ``threads:N`` becomes ``device.threads = N``."""
    plan = _parallel_plan(scenario)
    if plan.mode != "threads":
        return scenario
    return replace(scenario, parallel="none", device=replace(scenario.device, threads=plan.threads))


def path_of(scenario: Scenario) -> str:
    """Which execution path ``scenario`` takes: "single", "compressed" or "distributed"."""
    plan = _parallel_plan(scenario)
    compressed = scenario.compression not in ("", "none")
    if plan.distributed:  # compressed data-parallel runs too (sharded ones are refused by the pre-flight)
        return "distributed"
    return "compressed" if compressed else "single"


def execute(scenario: Scenario, progress: bool = False, json_path: str | None = None,
            allow_oversubscribe: bool = False, verbose: bool = False) -> Record:
    """Run ``scenario`` on the path it needs and return its record (raises on failure; see ``execute_or_record``).

    The pre-flight check (values, memory, cores, paths) runs first: a scenario that cannot fit or
    cannot run fails in under a second, before any allocation or process start. Then the thread
    settings are exported and TensorFlow starts with its start-up log in a file (``verbose``: on the
    terminal).
    """
    from recsys_impls import preflight, startup

    if scenario.model.spec.task == "retrieval":
        return _execute_retrieval(scenario, progress, json_path, allow_oversubscribe, verbose)
    estimate = preflight.check(scenario, json_path=json_path, allow_oversubscribe=allow_oversubscribe)
    startup.prepare(scenario, verbose=verbose)
    path = path_of(scenario)
    if path == "distributed":
        from recsys_impls.parallel.run import run_parallel

        record = run_parallel(scenario, progress=progress)
        record["preflight"] = estimate
        return record
    single = in_one_process(scenario)
    if path == "compressed":
        from recsys_impls.compression.section import run_compression

        record = run_compression(single, progress=progress)
    else:
        from recsys_impls.runner import run_scenario

        record = run_scenario(single, progress=progress)
    if single is not scenario:
        record = _as_threads_record(record, scenario)
    record["preflight"] = estimate
    return record


def _execute_retrieval(scenario: Scenario, progress: bool, json_path: str | None, allow_oversubscribe: bool,
                       verbose: bool) -> Record:
    """Retrieval models (two-tower, neumf) run in one process through their own runner (compressed: beside
    their fp32 baseline, as the ranking models; ``threads:N``: one process with N threads), or data parallel
    (``ddp:N``, ``mwms:N``) through the launcher, their ranks running ``retrieval_runner.run_rank``. The
    pre-flight checks cores and the --json path (no memory estimate for them yet); the axes are checked
    before anything starts."""
    from recsys_impls import preflight, startup
    from recsys_impls.retrieval_runner import check_axes, run_retrieval

    estimate = {"cores": preflight.check_cores(scenario, allow_oversubscribe),
                "memory": {"reason": "no memory estimate for retrieval models yet"}}
    if json_path is not None:
        estimate["json"] = preflight.check_json_path(json_path)
    check_axes(scenario)
    preflight.check_parallel(scenario)  # the global batch divisible by the ranks, the engine's own rules
    startup.prepare(scenario, verbose=verbose)
    single = in_one_process(scenario)
    if path_of(scenario) == "distributed":
        from recsys_impls.parallel.run import run_parallel

        record = run_parallel(scenario, progress=progress)
    elif scenario.compression not in ("", "none"):
        from recsys_impls.compression.section import run_compression

        record = run_compression(single, progress=progress)
    else:
        record = run_retrieval(single, progress=progress)
    if single is not scenario:
        record = _as_threads_record(record, scenario)
    record["preflight"] = estimate
    return record


def _as_threads_record(record: Record, scenario: Scenario) -> Record:
    """A threads:N run's record keeps the user's axis value and says how it ran."""
    plan = _parallel_plan(scenario)
    record["scenario"]["parallel"] = scenario.parallel
    record["parallel"] = {"mode": "threads", "spec": plan.spec, "world_size": 1, "threads": plan.threads,
                          "train_samples_per_s": record["throughput"]["train_samples_per_s"]}
    return record


def execute_or_record(scenario: Scenario, progress: bool = False) -> Record:
    """``execute``, with a failure turned into a record (status "skipped" or "failed" and the reason).

    For suites that run many scenarios: one failing never loses the others.
    """
    try:
        return execute(scenario, progress=progress)
    except Exception as exc:  # noqa: BLE001 - recorded with its reason (skipped when unsupported), the suite goes on
        return Record.failed(scenario, exc)
