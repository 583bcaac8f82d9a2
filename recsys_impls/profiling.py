"""Profilers around a scenario: py-spy flame graphs, the PyTorch profiler and the TensorFlow profiler.

Profiles are diagnostics, never timed figures: sampling and tracing slow the run down, so nothing
here runs inside a timed benchmark.

* ``profile_with_pyspy`` runs a child Python process under ``py-spy record`` once, in py-spy's raw
  (collapsed-stack) format, and derives the flame graph SVG and the speedscope JSON from it, so both
  views describe the same run.
* ``torch_profiler_trace`` / ``tf_profiler_trace`` drive any ``Recommender`` (recsys_impls/base.py)
  over staged batches and write a Chrome trace / a TensorBoard profile directory. torch and
  TensorFlow are imported inside the functions only.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsys_impls.base import Recommender
from recsys_impls.errors import ScenarioUnsupported, UsageError
from recsys_impls.measure.loop import timed_loop

PHASES = ("train", "infer")
NO_PYTHON_FRAME = "[no Python frame]"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*):(?P<line>\d+)\)$")


# Runs `-m module ...`, `-c code ...` or `script ...` like the interpreter would, then writes the exit
# code to the file named by its first argument. Adds two frames at the root of every stack.
_CHILD_WRAPPER = """
import os, runpy, sys, traceback
status_path, argv = sys.argv[1], sys.argv[2:]
code = 1
try:
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if exc.code is not None and not isinstance(exc.code, int):
        print(exc.code, file=sys.stderr)
except BaseException:
    traceback.print_exc()
finally:
    with open(status_path, "w") as fh:
        fh.write(str(code))
sys.exit(code)
"""


# --- py-spy -------------------------------------------------------------------------------------
def pyspy_executable() -> str:
    """Path of py-spy: next to this interpreter first (a virtualenv's bin), then PATH."""
    here = Path(sys.executable).with_name("py-spy")
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("py-spy")
    if found is None:
        raise ScenarioUnsupported("py-spy is not installed: pip install py-spy (extra 'profile')")
    return found


def profile_with_pyspy(
    cmd_args: Sequence[str],
    out_dir: str | os.PathLike[str],
    rate: int = 100,
    name: str = "pyspy",
    native: bool = False,
    subprocesses: bool = False,
    nonblocking: bool = False,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python <cmd_args>`` under py-spy and write ``<name>.svg``, ``<name>.speedscope.json`` and
    ``<name>.collapsed.txt`` (raw stacks, loadable by speedscope and flamegraph.pl) into ``out_dir``.

    ``cmd_args`` are the interpreter's arguments, e.g. ``["-m", "recsys_impls", "run", "--preset",
    "tiny"]``. Returns the paths, the sample count and the child's exit code. Raises
    ``ScenarioUnsupported`` when py-spy is missing or cannot attach (no ptrace permission: run the
    container with ``--cap-add SYS_PTRACE``), ``UsageError`` for a bad rate, and ``RuntimeError``
    when the profiled program itself fails (its last output lines are in the message).
    """
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 10_000:
        raise UsageError(f"--rate {rate!r}: py-spy sampling rate must be an integer from 1 to 10000 per second")
    if not cmd_args or (cmd_args[0].startswith("-") and cmd_args[0] not in ("-m", "-c")) or (
        cmd_args[0] in ("-m", "-c") and len(cmd_args) < 2
    ):
        raise UsageError(
            f"profile_with_pyspy: command {list(cmd_args)!r}; accepted: ['-m', module, ...], ['-c', code, ...] "
            "or [script.py, ...]"
        )
    exe = pyspy_executable()
    out = _out_dir(out_dir)
    raw = out / f"{name}.collapsed.txt"
    cmd = [exe, "record", "--format", "raw", "--rate", str(rate), "--output", str(raw)]
    cmd += ["--native"] * native + ["--subprocesses"] * subprocesses + ["--nonblocking"] * nonblocking
    status = out / f"{name}.exit_status"
    status.unlink(missing_ok=True)
    # py-spy exits 0 whatever its child did, so a small wrapper records the child's own exit code.
    cmd += ["--", sys.executable, "-c", _CHILD_WRAPPER, str(status), *cmd_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"py-spy run exceeded {timeout_s} s: {' '.join(cmd_args)}") from exc
    log = (proc.stdout or "") + (proc.stderr or "")
    (out / f"{name}.log").write_text(log)
    if not raw.is_file() or raw.stat().st_size == 0:
        lowered = log.lower()
        if "permission" in lowered or "ptrace" in lowered or "operation not permitted" in lowered:
            first = next((ln for ln in log.splitlines() if "ermission" in ln or "ptrace" in ln), log.strip()[:200])
            raise ScenarioUnsupported(
                f"py-spy cannot attach here ({first.strip()}); needs ptrace: run as root or with SYS_PTRACE"
            )
        tail = " | ".join(log.strip().splitlines()[-5:])
        if status.is_file():
            raise RuntimeError(
                f"the profiled program ended (exit {status.read_text().strip() or '?'}) before py-spy could "
                f"attach, so there are no samples; profile a run that lasts at least a second: {tail}"
            )
        raise RuntimeError(f"py-spy wrote no samples (exit {proc.returncode}): {tail}")
    stacks = read_collapsed(raw.read_text())
    total = sum(stacks.values())
    svg = out / f"{name}.svg"
    title = " ".join(f"py-spy: python {' '.join(cmd_args)}".split())[:200]
    svg.write_text(flamegraph_svg(stacks, title=title, rate=rate))
    speedscope = out / f"{name}.speedscope.json"
    speedscope.write_text(json.dumps(speedscope_profile(stacks, name=name, rate=rate)))
    child_rc = int(status.read_text().strip() or 1) if status.is_file() else None
    if child_rc != 0 or proc.returncode != 0:
        tail = " | ".join([ln for ln in log.splitlines() if ln.strip() and not ln.startswith("py-spy>")][-5:])
        raise RuntimeError(
            f"profiled program failed (exit {child_rc}, py-spy exit {proc.returncode}); profile kept in {out}: {tail}"
        )
    return {
        "svg": str(svg),
        "speedscope": str(speedscope),
        "collapsed": str(raw),
        "log": str(out / f"{name}.log"),
        "samples": total,
        "rate": rate,
        "returncode": child_rc,
    }


def read_collapsed(text: str) -> dict[tuple[str, ...], int]:
    """Collapsed stacks ("root;caller;callee COUNT" per line) -> {frames root-first: count}."""
    stacks: dict[tuple[str, ...], int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, sep, count = line.rstrip().rpartition(" ")
        if not sep or not count.isdigit():
            raise ValueError(f"not a collapsed-stack line: {line[:120]!r}")
        # py-spy writes " N" for samples that caught no Python frame (start-up, native-only threads).
        key = tuple(stack.split(";")) if stack.strip() else (NO_PYTHON_FRAME,)
        stacks[key] = stacks.get(key, 0) + int(count)
    return stacks


def focus_stacks(stacks: dict[tuple[str, ...], int], frame: str) -> dict[tuple[str, ...], int]:
    """Only the stacks that pass through a frame whose text contains ``frame``, re-rooted there.

    Used to cut imports and data preparation out of a scenario profile, leaving the measured loop.
    """
    out: dict[tuple[str, ...], int] = {}
    for stack, count in stacks.items():
        for i, f in enumerate(stack):
            if frame in f:
                key = stack[i:]
                out[key] = out.get(key, 0) + count
                break
    return out


def speedscope_profile(stacks: dict[tuple[str, ...], int], name: str = "profile", rate: int = 100) -> dict[str, Any]:
    """Stacks -> a speedscope "sampled" profile (https://www.speedscope.app/file-format-schema.json).

    Weights are seconds (samples / rate) so speedscope shows time, not counts.
    """
    index: dict[str, int] = {}
    frames: list[dict[str, Any]] = []
    samples: list[list[int]] = []
    weights: list[float] = []
    for stack, count in stacks.items():
        ids = []
        for frame in stack:
            if frame not in index:
                index[frame] = len(frames)
                m = _FRAME.match(frame)
                frames.append(
                    {"name": m["name"], "file": m["file"], "line": int(m["line"])} if m else {"name": frame}
                )
            ids.append(index[frame])
        samples.append(ids)
        weights.append(count / rate)
    total = sum(weights)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [{
            "type": "sampled", "name": name, "unit": "seconds", "startValue": 0, "endValue": total,
            "samples": samples, "weights": weights,
        }],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": "recsys_impls.profiling",
    }


def _color(name: str) -> str:
    """A stable warm colour per function name, so the same function looks the same across graphs."""
    h = hashlib.md5(name.encode(), usedforsecurity=False).digest()
    return f"rgb({205 + h[0] % 50},{80 + h[1] % 130},{h[2] % 55})"


def flamegraph_svg(
    stacks: dict[tuple[str, ...], int], title: str = "flame graph", rate: int = 100, width: int = 1200
) -> str:
    """A static flame graph (root at the bottom, width = share of samples); hover a box for its figures."""
    tree: dict[str, Any] = {"n": 0, "c": {}}
    for stack, count in stacks.items():
        node = tree
        node["n"] += count
        for frame in stack:
            node = node["c"].setdefault(frame, {"n": 0, "c": {}})
            node["n"] += count
    total = max(tree["n"], 1)

    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(c) for c in node["c"].values()), default=0)

    row, top = 17, 40
    levels = depth(tree) - 1
    height = top + row * max(levels, 1) + 10
    scale = (width - 20) / total
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fdfdf5"/>',
        f'<text x="{width // 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<text x="10" y="34" fill="#666">{tree["n"]} samples at {rate}/s '
        f"({tree['n'] / rate:.2f} s of wall time per thread)</text>",
    ]

    def draw(node: dict[str, Any], x: float, level: int) -> None:
        for frame, child in node["c"].items():
            w = child["n"] * scale
            if w >= 0.5:  # narrower than half a pixel: invisible, skip it and its callees
                y = height - 10 - row * (level + 1)
                pct = 100.0 * child["n"] / total
                label = html.escape(frame)
                chars = int((w - 4) / 6.6)
                text = html.escape(frame if len(frame) <= chars else frame[: max(chars - 2, 0)] + "..")
                parts.append(
                    f'<g><title>{label} ({child["n"]} samples, {pct:.2f}%)</title>'
                    f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{row - 1}" fill="{_color(frame)}" rx="2"/>'
                    + (f'<text x="{x + 2:.2f}" y="{y + row - 5}">{text}</text>' if chars >= 3 else "")
                    + "</g>"
                )
                draw(child, x, level + 1)
            x += w

    draw(tree, 10.0, 0)
    parts.append("</svg>")
    return "\n".join(parts)


# --- framework profilers ------------------------------------------------------------------------
def _out_dir(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder; give a folder path for the profiles")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _step_fn(recommender: Recommender, phase: str) -> Any:
    if phase not in PHASES:
        raise UsageError(f"--phase {phase}: accepted: {', '.join(PHASES)}")
    return recommender.train_step if phase == "train" else recommender.infer


def _numbered(step: Any, phase: str, warmup: int, scope: Any) -> Any:
    """``step`` inside a named scope per timed step ("train step 0", ...); warm-up steps run unnamed."""
    calls = [0]

    def named(batch: Any) -> Any:
        i = calls[0] - warmup
        calls[0] += 1
        if i < 0:
            return step(batch)
        with scope(f"{phase} step {i}"):
            return step(batch)

    return named


@contextmanager
def _tf_profiler_session(tf: Any, logdir: str) -> Iterator[None]:
    tf.profiler.experimental.start(logdir)
    try:
        yield
    finally:
        tf.profiler.experimental.stop()


def torch_profiler_trace(
    recommender: Recommender,
    staged_batches: Sequence[Any],
    out_dir: str | os.PathLike[str],
    phase: str = "train",
    warmup: int = 2,
    record_shapes: bool = True,
    profile_memory: bool = True,
    with_stack: bool = False,
    step: Any = None,
) -> dict[str, Any]:
    """Profile ``phase`` steps of a PyTorch Recommender with torch.profiler; write a Chrome trace.

    The first ``warmup`` batches run unprofiled (lazy init, autotuning); every later batch is one
    ``step N`` range in the trace. CUDA activity is recorded when CUDA is available. Writes
    ``torch_trace.json`` (chrome://tracing, Perfetto) and ``torch_ops.txt`` (top operators). ``step`` runs one
    batch (default: the Recommender's train_step or infer for ``phase``).
    """
    import torch  # noqa: PLC0415 - heavy; only when profiling
    from torch.profiler import ProfilerActivity, profile, record_function  # noqa: PLC0415

    step = step or _step_fn(recommender, phase)
    if len(staged_batches) <= warmup:
        raise UsageError(f"torch profiler: {len(staged_batches)} batches given; need more than warmup={warmup}")
    out = _out_dir(out_dir)
    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    prof = profile(activities=activities, record_shapes=record_shapes, profile_memory=profile_memory,
                   with_stack=with_stack)
    timed_loop(_numbered(step, phase, warmup, lambda name: record_function(name)), staged_batches, warmup=warmup,
               sync=recommender.synchronize, window=[prof])
    trace = out / "torch_trace.json"
    prof.export_chrome_trace(str(trace))
    sort_key = "self_cuda_time_total" if ProfilerActivity.CUDA in activities else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_key, row_limit=30)
    ops = out / "torch_ops.txt"
    ops.write_text(table)
    return {
        "trace": str(trace),
        "ops": str(ops),
        "steps": len(staged_batches) - warmup,
        "phase": phase,
        "activities": [a.name for a in activities],
    }


def tf_profiler_trace(
    recommender: Recommender,
    staged_batches: Sequence[Any],
    out_dir: str | os.PathLike[str],
    phase: str = "train",
    warmup: int = 2,
    step: Any = None,
) -> dict[str, Any]:
    """Profile ``phase`` steps of a TensorFlow Recommender with tf.profiler.experimental (``step``: as for
    torch_profiler_trace).

    Warm-up batches (tf.function tracing, XLA compilation) run first, unprofiled. Each later batch is
    a ``Trace`` step. Writes a TensorBoard profile directory (``plugins/profile/<run>/*.xplane.pb``;
    view with ``tensorboard --logdir DIR`` and the tensorboard-plugin-profile package).
    """
    import tensorflow as tf  # noqa: PLC0415 - heavy; only when profiling

    step = step or _step_fn(recommender, phase)
    if len(staged_batches) <= warmup:
        raise UsageError(f"tf profiler: {len(staged_batches)} batches given; need more than warmup={warmup}")
    out = _out_dir(out_dir)

    def trace(name: str) -> Any:
        return tf.profiler.experimental.Trace(phase, step_num=int(name.rsplit(" ", 1)[1]), _r=1)

    timed_loop(_numbered(step, phase, warmup, trace), staged_batches, warmup=warmup, sync=recommender.synchronize,
               window=[_tf_profiler_session(tf, str(out))])
    files = sorted(str(p) for p in out.glob("plugins/profile/*/*") if p.is_file())
    return {"logdir": str(out), "files": files, "steps": len(staged_batches) - warmup, "phase": phase}


# --- whole scenarios (the CLI's `profile` command) ---------------------------------------------
def _prepared_steps(scenario: Any, phase: str, max_steps: int | None) -> tuple[Recommender, list[Any], Any]:
    """Build the scenario's model and stage its batches for ``phase``: (model, staged, step fn)."""
    from recsys_impls import registry  # noqa: PLC0415 - heavy; only when profiling
    from recsys_impls.data.loader import prepare  # noqa: PLC0415

    if phase not in PHASES:
        raise UsageError(f"--phase {phase}: accepted: {', '.join(PHASES)}")
    if scenario.model.spec.task == "retrieval":  # built, batched and served by the retrieval runner
        from recsys_impls.retrieval_runner import prepared_steps  # noqa: PLC0415

        return prepared_steps(scenario, phase, max_steps)

    scenario, data = prepare(scenario)
    impl = registry.build(scenario)
    step = _step_fn(impl, phase)
    bs = scenario.train.batch_size
    source = data.train if phase == "train" else data.eval
    batches = source.split(bs) or [source]
    if max_steps is not None:
        batches = batches[:max_steps]
    staged = [impl.stage(b) for b in batches]
    impl.synchronize()
    return impl, staged, step


def _warmup_loop(step: Any, staged: Sequence[Any], synchronize: Any) -> None:
    """Warm-up steps, in their own frame so the flame graph separates them from the measured loop."""
    timed_loop(step, staged, start=0, steps=len(staged), sync=synchronize)


def _profiled_loop(step: Any, staged: Sequence[Any], synchronize: Any) -> None:
    """The loop py-spy should look at: find this frame in the flame graph and zoom in."""
    timed_loop(step, staged, start=0, steps=len(staged), sync=synchronize)


def profile_scenario(
    scenario: Any,
    out_dir: str | os.PathLike[str],
    pyspy: bool = False,
    torch_profiler: bool = False,
    tf_profiler: bool = False,
    phase: str = "train",
    rate: int = 100,
    max_steps: int | None = None,
    trace_steps: int = 20,
    warmup: int = 2,
) -> list[str]:
    """Profile one scenario with the chosen profilers; returns the paths written into ``out_dir``.

    py-spy samples a child process that builds the model and runs only the ``phase`` loop (this
    module's ``main``); the framework profilers run in this process over ``trace_steps`` batches
    (traces grow fast, so they are kept short).
    """
    if phase not in PHASES:
        raise UsageError(f"--phase {phase}: accepted: {', '.join(PHASES)}")
    if torch_profiler and scenario.framework != "torch":
        raise UsageError(f"--torch-profiler profiles PyTorch but --framework is {scenario.framework}; "
                         "use --tf-profiler, or --framework torch")
    if tf_profiler and scenario.framework != "tf":
        raise UsageError(f"--tf-profiler profiles TensorFlow but --framework is {scenario.framework}; "
                         "use --torch-profiler, or --framework tf")
    if scenario.parallel not in ("none", ""):
        raise ScenarioUnsupported(f"profiling a parallel scenario ({scenario.parallel}) is not supported; "
                                  "profile the single-process scenario")
    out = _out_dir(out_dir)
    written: list[str] = []
    if pyspy:
        spec = out / "scenario.json"
        spec.write_text(json.dumps(scenario.to_dict(), indent=1))
        args = ["-m", "recsys_impls.profiling", "--scenario", str(spec), "--phase", phase, "--warmup", str(warmup)]
        if max_steps is not None:
            args += ["--max-steps", str(max_steps)]
        name = f"pyspy_{scenario.framework}_{phase}"
        res = profile_with_pyspy(args, out, rate=rate, name=name)
        written += [res["svg"], res["speedscope"], res["collapsed"]]
        # The whole run includes imports and data generation; also write the measured loop alone.
        loop = focus_stacks(read_collapsed(Path(res["collapsed"]).read_text()), "_profiled_loop")
        if loop:
            svg, ss = out / f"{name}_loop.svg", out / f"{name}_loop.speedscope.json"
            svg.write_text(flamegraph_svg(loop, title=f"py-spy: {scenario.framework} {phase} loop only", rate=rate))
            ss.write_text(json.dumps(speedscope_profile(loop, name=f"{name}_loop", rate=rate)))
            written += [str(svg), str(ss)]
    if torch_profiler or tf_profiler:
        impl, staged, step = _prepared_steps(scenario, phase, warmup + trace_steps)
        if torch_profiler:
            res = torch_profiler_trace(impl, staged, out / "torch_profiler", phase=phase, warmup=warmup, step=step)
            written += [res["trace"], res["ops"]]
        else:
            res = tf_profiler_trace(impl, staged, out / "tf_profiler", phase=phase, warmup=warmup, step=step)
            written += [res["logdir"]]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point for py-spy: build the scenario, warm up, run only the ``phase`` loop."""
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m recsys_impls.profiling", allow_abbrev=False)
    p.add_argument("--scenario", required=True, help="JSON file written by Scenario.to_dict()")
    p.add_argument("--phase", choices=PHASES, default="train")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    args = p.parse_args(argv)
    from recsys_impls.config import Scenario  # noqa: PLC0415

    scenario = Scenario.from_dict(json.loads(Path(args.scenario).read_text()))
    impl, staged, step = _prepared_steps(scenario, args.phase, args.max_steps)
    warm = min(args.warmup, max(len(staged) - 1, 0))
    _warmup_loop(step, staged[:warm], impl.synchronize)
    _profiled_loop(step, staged[warm:], impl.synchronize)
    return 0


if __name__ == "__main__":
    sys.exit(main())
