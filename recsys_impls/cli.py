"""`python -m recsys_impls run|list|profile|compare|bench|export|serve ...`: one scenario from the command line.

Every user error ends as one line on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from recsys_impls.config import (
    COMPILE_MODES,
    FRAMEWORKS,
    INPUT_MODES,
    MAX_THREADS,
    OPTIMIZERS,
    PRECISIONS,
    PRESETS,
    Scenario,
    build_scenario,
    load_config_file,
)
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.models import model_names


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (not the whole usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _add_scenario_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", default=None, help=f"one of: {', '.join(FRAMEWORKS)} (default torch)")
    p.add_argument("--model", default=None, help=f"one of: {', '.join(model_names())} (default dlrm; see `list`)")
    p.add_argument("--data", default=None, help="synthetic (default), movielens, or a path to a Criteo TSV (.gz ok)")
    p.add_argument("--config", default=None, help="TOML or JSON file with model/data/train keys; flags override it")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="a named model shape (see `list`)")
    p.add_argument("--steps", type=int, default=None, help="training steps")
    p.add_argument("--input", default=None, choices=list(INPUT_MODES),
                   help="compute-only (default): a bounded set of staged batches rotates in the timed window; "
                        "end-to-end: the input pipeline produces every batch inside it")
    p.add_argument("--max-rows", type=int, default=None, help="cap every table at N rows (ids hashed into it)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--eval-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--optimizer", default=None, help=f"one of: {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--skip-bad-lines", action="store_true", help="TSV: count and skip malformed lines")
    p.add_argument("--compression", default=None, help="e.g. int8, hash:0.1, qr:4, prune:0.8 (see `list`)")
    p.add_argument("--parallel", default=None, help="e.g. threads:2, ddp:2, sharded:2:table-wise (see `list`)")
    p.add_argument("--straggler", default=None, help="RANK:FACTOR: that rank's compute FACTOR x slower (e.g. 1:2)")
    p.add_argument("--hot-table", default=None, help="F:SHARE: synthetic table F takes SHARE of all lookups")
    p.add_argument("--balance", default=None, help="static (default) or adaptive[:K]: shares re-chosen every K steps")
    p.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N (PyTorch), GPU:N (TensorFlow)")
    p.add_argument("--precision", default=None, help=f"one of: {', '.join(PRECISIONS)}")
    p.add_argument("--compile", default=None, help=f"one of: {', '.join(COMPILE_MODES)}")
    p.add_argument("--pinned-memory", action="store_true", default=None, help="pinned host buffers, async copies")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (0 = the CPUs this process may use)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m recsys_impls", allow_abbrev=False,
                     description="Benchmark recommender models (DLRM, DCNv2, ...) in PyTorch and TensorFlow.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", allow_abbrev=False, help="train, evaluate and measure one scenario")
    _add_scenario_options(run)
    run.add_argument("--json", default=None, help="write the record to this file")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    run.add_argument("--oversubscribe", action="store_true",
                     help="allow more busy threads than 2 x the available cores (multi-node or deliberate runs)")
    run.add_argument("--verbose", action="store_true", help="show the frameworks' start-up logs")
    sub.add_parser("list", allow_abbrev=False, help="print the scenarios and axes")
    prof = sub.add_parser("profile", allow_abbrev=False, help="profile one scenario (py-spy, torch/TF profiler)")
    _add_scenario_options(prof)
    prof.add_argument("--pyspy", action="store_true", help="py-spy flame graph (SVG) and speedscope JSON")
    prof.add_argument("--torch-profiler", action="store_true", help="PyTorch profiler Chrome trace")
    prof.add_argument("--tf-profiler", action="store_true", help="TensorFlow profiler trace")
    prof.add_argument("--out", default="runs/profile", help="output folder (default runs/profile)")
    prof.add_argument("--phase", default="train", help="train (default) or infer: the loop to profile")
    prof.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    cmp_ = sub.add_parser("compare", allow_abbrev=False,
                          help="time two frameworks, precisions or compressions on the same work side by side "
                               "(A B A B ...) in one process")
    cmp_.add_argument("--frameworks", default="tf,torch",
                      help="A,B, each FRAMEWORK[:PRECISION][@COMPRESSION] (e.g. tf,torch or torch:amp-bf16,torch:fp32 "
                           "or torch@int8,torch): the ratio is A's step time over B's")
    cmp_.add_argument("--preset", default="dlrm-ref", choices=sorted(PRESETS))
    cmp_.add_argument("--phase", default="train", help="train (default) or infer")
    cmp_.add_argument("--blocks", type=int, default=10, help="rounds of one block per framework (default 10)")
    cmp_.add_argument("--steps-per-block", type=int, default=10)
    cmp_.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0: the cores available)")
    cmp_.add_argument("--precision", default=None, help=f"one of: {', '.join(PRECISIONS)} (both frameworks)")
    cmp_.add_argument("--json", default=None, help="write the result to this file")
    exp = sub.add_parser("export", allow_abbrev=False,
                         help="export the (trained) model to deployable formats with manifests and parity")
    _add_scenario_options(exp)
    exp.add_argument("--format", default=None,
                     help="comma-separated: exported-program, aoti, onnx, onnx-int8 (torch); savedmodel, onnx, "
                          "onnx-int8 (tf); or all (default: exported-program,onnx / savedmodel,onnx)")
    exp.add_argument("--out", required=True, help="export folder (must be empty unless --force)")
    exp.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    exp.add_argument("--onnx-exporter", default="auto", choices=("auto", "dynamo", "torchscript"),
                     help="PyTorch ONNX exporter: auto (dynamo, else the TorchScript-based one), dynamo, torchscript")
    srv = sub.add_parser("serve", allow_abbrev=False, help="serve the model with a runtime under MLPerf LoadGen")
    _add_scenario_options(srv)
    srv.add_argument("--runtime", required=True, help="torch-eager, torch-compile, torch-export, torch-aoti, "
                     "onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, onnxruntime-int8, tf-native, tf-savedmodel")
    srv.add_argument("--scenario", default="Offline", help="SingleStream, Offline, Server (comma-separated) or all")
    srv.add_argument("--out", default="runs/serve", help="record and LoadGen logs (must be empty unless --force)")
    srv.add_argument("--force", action="store_true", help="reuse a non-empty --out")
    srv.add_argument("--export-dir", default=None, help="serve this export (its manifest must match the model)")
    srv.add_argument("--samples", type=int, default=4096, help="held-out samples LoadGen draws from")
    srv.add_argument("--min-duration-ms", type=int, default=2000)
    srv.add_argument("--min-queries", type=int, default=100)
    srv.add_argument("--target-qps", type=float, default=100.0, help="Server arrival rate (Poisson)")
    srv.add_argument("--latency-bound-ms", type=float, default=10.0, help="Server p99 bound (default 10 ms)")
    srv.add_argument("--max-batch", type=int, default=256, help="dynamic batcher: largest batch (1: no batching)")
    srv.add_argument("--max-wait-ms", type=float, default=1.0, help="dynamic batcher: longest wait for a batch")
    srv.add_argument("--search", action="store_true", help="also search the highest Server QPS meeting the bound")
    bench = sub.add_parser("bench", allow_abbrev=False, help="run the asv suite into .asv/results, then the report")
    bench.add_argument("--quick", action="store_true", help="the quick subset of the grids (RECSYS_BENCH_QUICK=1)")
    bench.add_argument("--machine", default=None, help="asv machine name (default: host name + GPU)")
    bench.add_argument("--bench", default=None, help="regex of benchmarks to run (asv --bench)")
    bench.add_argument("--no-report", action="store_true", help="skip building the HTML report")
    bench.add_argument("--verbose", action="store_true", help="show the benchmarks' stderr (asv --show-stderr)")
    return parser


_FLAG_TO_KEY = {
    "steps": ("train", "steps"),
    "input": ("train", "input_mode"),
    "max_rows": ("model", "max_rows"),
    "batch_size": ("train", "batch_size"),
    "eval_samples": ("train", "eval_samples"),
    "seed": ("train", "seed"),
    "optimizer": ("train", "optimizer"),
    "lr": ("train", "learning_rate"),
    "data": ("data", "source"),
    "skip_bad_lines": ("data", "skip_bad_lines"),
    "device": ("device", "device"),
    "precision": ("device", "precision"),
    "compile": ("device", "compile"),
    "pinned_memory": ("device", "pinned_memory"),
    "threads": ("device", "threads"),
    "framework": ("scenario", "framework"),
    "model": ("model", "arch"),
    "compression": ("scenario", "compression"),
    "parallel": ("scenario", "parallel"),
    "straggler": ("scenario", "straggler"),
    "balance": ("scenario", "balance"),
    "hot_table": ("data", "hot_table"),
}


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Preset, then --config file, then flags: later ones win."""
    layers: list[dict[str, dict[str, Any]]] = []
    if args.preset:
        layers.append(PRESETS[args.preset])
    if args.config:
        layers.append(load_config_file(args.config))
    flags: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in _FLAG_TO_KEY.items():
        value = getattr(args, flag, None)
        if value is not None and value is not False:
            flags.setdefault(section, {})[key] = value
    layers.append(flags)
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return build_scenario(merged)


def _fmt(value: Any, fmt: str = "{:.4f}") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return fmt.format(value)
    return str(value)


def _retrieval_rows(q: dict[str, Any], t: dict[str, Any]) -> list[tuple[str, str]]:
    """Quality rows of a retrieval model: the model, the popularity baseline, the achievable figure."""
    keys = ("recall@10", "recall@50", "recall@100", "ndcg@10") if "recall@10" in q else ("hr@10", "ndcg@10")
    rows = [(f"{' / '.join(keys)} ({who})", " / ".join(_fmt((src or {}).get(k)) for k in keys))
            for who, src in (("model", q), ("popularity", q.get("popularity")), ("achievable", q.get("achievable")))
            if src]
    if t.get("queries_per_s") is not None:
        rows.append(("retrieval queries/s (top-100, whole corpus)", _fmt(t["queries_per_s"], "{:,.0f}")))
    return rows


def summary_table(record: dict[str, Any]) -> str:
    """A readable, aligned summary of one record."""
    q, t, lat, size, mem = (record.get(k) or {} for k in ("quality", "throughput", "latency_ms", "size", "memory"))
    rows = [
        ("framework", record["framework"]),
        ("data", record.get("data", {}).get("name")),
        ("compression / parallel", f"{record['scenario']['compression']} / {record['scenario']['parallel']}"),
        *(_retrieval_rows(q, t) if "recall@10" in q or "hr@10" in q else [
            ("AUC (data's own reference)", f"{_fmt(q.get('auc'))} ({_fmt(q.get('reference_auc'))})"),
            ("logloss / NE", f"{_fmt(q.get('logloss'))} / {_fmt(q.get('ne'))}"),
            ("accuracy / precision / recall / F1",
             " / ".join(_fmt(q.get(k), "{:.3f}") for k in ("accuracy", "precision", "recall", "f1")))]),
        ("train throughput (samples/s)", _fmt(t.get("train_samples_per_s"), "{:,.0f}")),
        ("inference throughput (samples/s)", _fmt(t.get("infer_samples_per_s"), "{:,.0f}")),
        (f"latency p50/p95/p99 ms (batch {lat.get('batch_size')})",
         " / ".join(_fmt(lat.get(k), "{:.3f}") for k in ("p50", "p95", "p99"))),
        ("model / embedding bytes", f"{_fmt(size.get('model_bytes'), '{:,}')} / {_fmt(size.get('embedding_bytes'))}"),
        ("peak host RSS (MiB), huge pages", f"{_fmt((mem.get('peak_host_rss_bytes') or 0) / 2**20, '{:,.0f}')}, "
                                            f"{_huge_pages_text(mem.get('huge_pages'))}"),
    ]
    inp = record.get("input")
    if inp:
        wait = inp.get("wait_fraction")
        rows.append((f"input ({inp.get('mode')}): producer samples/s, wait, verdict",
                     f"{_fmt((inp.get('producer') or {}).get('samples_per_s'), '{:,.0f}')}, "
                     f"{'n/a' if wait is None else f'{wait:.1%}'}, {inp.get('verdict')}"))
    energy = record.get("energy") or {}
    if "train" in energy:
        rows.append(("train energy J/1k samples", _fmt(energy["train"].get("joules_per_1k_samples"))))
    else:
        rows.append(("energy", f"n/a ({energy.get('reason')})"))
    comp = record.get("compression")
    if comp:
        gate = comp.get("gate_metric", "auc")
        rows += [
            ("embedding / model bytes ratio vs fp32",
             f"{_fmt(comp.get('embedding_ratio'), '{:.2f}x')} / {_fmt(comp.get('model_ratio'), '{:.2f}x')}"),
        ]
        label = f"{'AUC' if gate == 'auc' else gate} change vs fp32 baseline"
        rows += [
            (f"{label} (gate)", f"{_fmt(comp.get(f'{gate}_delta'), '{:+.4f}')} ({comp.get('gate')})"),
            ("inference speed vs fp32", _fmt(comp.get("infer_speed_vs_baseline"), "{:.2f}x")),
        ]
    par = record.get("parallel")
    if par:
        rows += [
            ("parallel mode / world size", f"{par.get('mode')} / {par.get('world_size')}"),
            ("scaling efficiency", _fmt(par.get("scaling_efficiency"), "{:.2f}")),
        ]
        if par.get("imbalance"):
            rows.append(("imbalance (max/mean)", ", ".join(f"{k} {_fmt(v, '{:.3f}')}"
                                                           for k, v in par["imbalance"].items())))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def cmd_run(args: argparse.Namespace) -> int:
    from recsys_impls.execute import execute

    scenario = scenario_from_args(args)
    progress = not args.quiet and sys.stderr.isatty()
    record = execute(scenario, progress=progress, json_path=args.json, allow_oversubscribe=args.oversubscribe,
                     verbose=args.verbose)
    if args.json:
        record.save(args.json)
    if not args.quiet:
        print(summary_table(record))
        if args.json:
            print(f"record written to {args.json}")
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    from recsys_impls import listing

    print(listing.render())
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from recsys_impls import profiling

    scenario = scenario_from_args(args)
    scenario.model.spec.require_axis("profiling", "profile")
    if not (args.pyspy or args.torch_profiler or args.tf_profiler):
        raise UsageError("profile: choose at least one of --pyspy, --torch-profiler, --tf-profiler")
    written = profiling.profile_scenario(scenario, Path(args.out), pyspy=args.pyspy,
                                         torch_profiler=args.torch_profiler, tf_profiler=args.tf_profiler,
                                         phase=args.phase, rate=args.rate)
    for path in written:
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from recsys_impls import interleave, startup, threads
    from recsys_impls.record import Record

    pair = tuple(args.frameworks.split(","))
    if len(pair) != 2:
        raise UsageError(f"compare --frameworks {args.frameworks[:60]!r}: two different sides, comma-separated "
                         "(e.g. tf,torch or torch:amp-bf16,torch:fp32 or torch@int8,torch)")
    if args.precision is not None and args.precision not in PRECISIONS:
        raise UsageError(f"compare --precision {args.precision[:40]!r}: accepted: {', '.join(PRECISIONS)}")
    if not 0 <= args.threads <= MAX_THREADS:
        raise UsageError(f"compare --threads {args.threads}: accepted: 0 (the cores available) to {MAX_THREADS}")
    threads.export_env(threads.resolve(args.threads))
    if any(side.startswith("tf") for side in pair):
        startup.quiet_tensorflow_start()
    result = interleave.compare(pair, args.preset, args.phase, args.blocks, args.steps_per_block,
                                threads=args.threads or None, precision=args.precision)
    print(interleave.render(result))
    if args.json:
        Record(result).save(args.json)
    return 0


def _scenario_and_steps(args: argparse.Namespace) -> tuple[Scenario, int]:
    """The scenario and its training steps; ``--steps 0`` (allowed here) means the seeded initial parameters."""
    steps, args.steps = args.steps, (None if args.steps == 0 else args.steps)
    scenario = scenario_from_args(args)
    if steps is not None and steps < 0:
        raise UsageError(f"--steps {steps}: accepted: 0 (the seeded initial parameters) or more")
    return scenario, scenario.train.steps if steps is None else steps


def cmd_export(args: argparse.Namespace) -> int:
    from recsys_impls.serving import export, formats

    scenario, steps = _scenario_and_steps(args)
    names = formats.parse_formats(args.format, scenario.framework) if args.format else \
        formats.DEFAULT_FORMATS[scenario.framework]
    out = Path(args.out)
    export.check_compression(scenario.compression, names)
    export.check_out_dir(out, args.force)
    from recsys_impls import threads

    model = export.train_model(scenario, steps)
    intra = threads.resolve(scenario.device.threads).intra_op
    written = export.export_all(model, names, out, force=True, threads=intra, onnx_exporter=args.onnx_exporter)
    for fmt, man in written.items():
        p = man["parity"]
        print(f"{fmt}: {', '.join(man['files'])} ({man['stored_bytes']:,} bytes; {man['exporter'][:80]}); "
              f"parity max abs diff {p['max_abs_diff']:.2e} on {p['samples']} held-out samples (ok: {p['ok']})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from recsys_impls.serving import formats, loadgen, serve

    scenario, steps = _scenario_and_steps(args)
    formats.check_runtime(args.runtime, scenario.framework)
    scenarios = serve.parse_scenarios(args.scenario)
    if not 1 <= args.samples <= 10**7:
        raise UsageError(f"serve --samples {args.samples}: accepted: 1 to 10000000")
    settings = loadgen.LoadSettings(min_duration_ms=args.min_duration_ms, min_query_count=args.min_queries,
                                    target_qps=args.target_qps, latency_bound_ms=args.latency_bound_ms,
                                    max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                    max_duration_ms=max(60000, args.min_duration_ms)).check()
    if args.max_batch < 1 or not 0 <= args.max_wait_ms <= 10000:
        raise UsageError(f"serve --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}: accepted: "
                         "max batch >= 1, max wait 0 to 10000 ms")
    record = serve.serve(scenario, steps, args.runtime, scenarios, settings, Path(args.out),
                         export_dir=Path(args.export_dir) if args.export_dir else None, force=args.force,
                         search=args.search, samples=args.samples)
    print("\n".join(serve.summary_lines(record)))
    print(f"record and LoadGen logs in {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from recsys_impls import asv_driver

    return asv_driver.run(quick=args.quick, machine=args.machine, bench=args.bench, report=not args.no_report,
                          verbose=args.verbose)


def _huge_pages_text(hp: dict[str, Any] | None) -> str:
    if not hp:
        return "n/a"
    got = hp.get("anon_huge_bytes")
    return (f"on ({got / 2**30:.2f} GiB)" if hp.get("effective") and got is not None else
            "on" if hp.get("effective") else f"off ({hp.get('note')})")


def _print_startup_note() -> None:
    from recsys_impls import startup

    note = startup.failure_note()
    if note:
        print(note, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input (one line); 1 a failure (one line naming the log with the traceback);
    128 + N when ended by signal N (SIGTERM, SIGINT, SIGHUP), after every child process is ended."""
    from recsys_impls import signals

    # TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) drowns the summary; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    scope = None
    try:
        with signals.policy() as scope:
            args = build_parser().parse_args(argv)
            return {"run": cmd_run, "list": cmd_list, "profile": cmd_profile, "bench": cmd_bench,
                    "compare": cmd_compare, "export": cmd_export, "serve": cmd_serve}[args.command](args)
    except signals.Interrupted as exc:
        print(scope.line() if scope is not None else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # SIGINT raised before the policy was in place
        print("interrupted by SIGINT", file=sys.stderr)
        return 130
    except (UsageError, ScenarioUnsupported) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _print_startup_note()
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line here, the traceback in the log it names
        code = _report_failure(exc)
        _print_startup_note()
        return code


# Set to 1 to also print a failure's traceback on stderr (it is always in the log file).
TRACEBACK_ENV = "RECSYS_TRACEBACK"


def _report_failure(exc: Exception) -> int:
    """One line on stderr for a failure that is not bad input; the traceback goes to a log file it names."""
    import traceback

    from recsys_impls import logs
    from recsys_impls.parallel.launch import WorkerFailed

    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        traceback.print_exception(exc)
    if isinstance(exc, WorkerFailed):
        path = logs.write_traceback(exc, exc.log_dir, "parallel", exc.details)
        named = exc.log_dir is not None and path is not None and path.parent == exc.log_dir
        print(f"error: {exc}" + ("" if named else _where(path)), file=sys.stderr)
        return exc.exit_code
    path = logs.write_traceback(exc, kind="error")
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    print(f"error: {type(exc).__name__}: {text}{_where(path)}", file=sys.stderr)
    return 1


def _where(path: Path | None) -> str:
    return f" (traceback: {path})" if path is not None else " (no log written: the log folder is not writable)"
