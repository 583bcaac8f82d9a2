"""Profilers: py-spy flame graphs on a tiny workload, torch and TF traces on tiny Recommenders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys_impls import profiling
from recsys_impls.base import Recommender
from recsys_impls.config import Scenario
from recsys_impls.errors import ScenarioUnsupported, UsageError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Runs for a fixed wall time, not a fixed count: py-spy needs the child alive when it attaches, and a
# count-bound loop can end first on a fast machine.
WORKLOAD = (
    "import time\n"
    "def inner_hot_function(n):\n"
    "    return sum(i * i for i in range(n))\n"
    "end = time.monotonic() + 1.5\n"
    "while time.monotonic() < end:\n"
    "    inner_hot_function(30000)\n"
)


def pyspy_or_skip(*args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return profiling.profile_with_pyspy(*args, **kwargs)
    except ScenarioUnsupported as exc:
        pytest.skip(str(exc))


def test_pyspy_writes_svg_and_speedscope(tmp_path: Path) -> None:
    res = pyspy_or_skip(["-c", WORKLOAD], tmp_path, rate=250, name="tiny")
    assert res["returncode"] == 0 and res["samples"] > 0
    svg = Path(res["svg"]).read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "inner_hot_function" in svg
    doc = json.loads(Path(res["speedscope"]).read_text())
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"]) > 0
    names = {f["name"] for f in doc["shared"]["frames"]}
    assert "inner_hot_function" in names
    assert prof["endValue"] == pytest.approx(res["samples"] / 250)


def test_pyspy_reports_a_failing_child(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exit 3"):
        pyspy_or_skip(["-c", WORKLOAD + "raise SystemExit(3)\n"], tmp_path, rate=250)


def test_pyspy_child_gone_before_attach_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in py-spy runs the child to completion and then fails to attach, as the real one does
    when the program ends first: the error must say so rather than report an empty profile."""
    fake = tmp_path / "fake-py-spy"
    fake.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != "--" ]; do shift; done; shift\n'
        '"$@"\n'
        "echo 'Error: Failed to get process executable name. Check that the process is running.' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(profiling, "pyspy_executable", lambda: str(fake))
    with pytest.raises(RuntimeError, match=r"ended \(exit 0\) before py-spy could attach"):
        profiling.profile_with_pyspy(["-c", "pass"], tmp_path / "out")


@pytest.mark.parametrize("args", [[], ["-X", "dev"], ["-m"]])
def test_pyspy_bad_command(tmp_path: Path, args: list[str]) -> None:
    with pytest.raises(UsageError):
        profiling.profile_with_pyspy(args, tmp_path)


def test_pyspy_bad_rate_and_out(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="rate"):
        profiling.profile_with_pyspy(["-c", "pass"], tmp_path, rate=0)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        profiling.profile_with_pyspy(["-c", "pass"], f)


def test_collapsed_to_speedscope_and_svg() -> None:
    text = " 4\na (f.py:1);b (f.py:2) 3\na (f.py:1);c 1\na (f.py:1);b (f.py:2) 2\n"
    stacks = profiling.read_collapsed(text)
    assert stacks == {(profiling.NO_PYTHON_FRAME,): 4, ("a (f.py:1)", "b (f.py:2)"): 5, ("a (f.py:1)", "c"): 1}
    doc = profiling.speedscope_profile(stacks, rate=10)
    frames = doc["shared"]["frames"]
    assert {"name": "b", "file": "f.py", "line": 2} in frames and {"name": "c"} in frames
    assert sum(doc["profiles"][0]["weights"]) == pytest.approx(1.0)
    svg = profiling.flamegraph_svg(stacks, title="t<&>")
    assert "t&lt;&amp;&gt;" in svg and "(5 samples, 50.00%)" in svg
    with pytest.raises(ValueError):
        profiling.read_collapsed("no count here\n")


def test_focus_stacks_reroots_at_the_loop() -> None:
    stacks = {("main", "_profiled_loop", "step"): 3, ("main", "import"): 5, ("main", "_profiled_loop"): 1}
    assert profiling.focus_stacks(stacks, "_profiled_loop") == {("_profiled_loop", "step"): 3, ("_profiled_loop",): 1}


def test_scenario_round_trip() -> None:
    from recsys_impls.config import PRESETS, build_scenario

    v2 = build_scenario({**PRESETS["dlrm-v2"], "data": {**PRESETS["dlrm-v2"]["data"], "hot_table": "2:0.5"}})
    for s in (Scenario(framework="tf"), v2):  # per-table exponents and bags, an architecture, a hot table
        assert Scenario.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_profile_scenario_rejects_mismatched_profiler(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--torch-profiler"):
        profiling.profile_scenario(Scenario(framework="tf"), tmp_path, torch_profiler=True)
    with pytest.raises(UsageError, match="--tf-profiler"):
        profiling.profile_scenario(Scenario(framework="torch"), tmp_path, tf_profiler=True)
    with pytest.raises(UsageError, match="--phase"):
        profiling.profile_scenario(Scenario(), tmp_path, pyspy=True, phase="eval")


class _TinyRecommender(Recommender):
    """A logistic regression on the dense features: enough to drive a profiler through the interface."""

    def __init__(self, fw: Any) -> None:
        super().__init__(Scenario())
        self.fw = fw

    def loss(self, staged: Any) -> float:
        return 0.0

    def get_params(self) -> dict[str, np.ndarray]:
        return {}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        pass

    def storage_bytes(self) -> dict[str, int]:
        return {"model": 0, "embedding": 0}

    def synchronize(self) -> None:
        pass


def _batches(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((32, 13)).astype(np.float32), rng.integers(0, 2, 32).astype(np.float32))
            for _ in range(n)]


def test_torch_trace_is_chrome_json_with_steps(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class TorchTiny(_TinyRecommender):
        framework = "torch"

        def __init__(self) -> None:
            super().__init__(torch)
            self.lin = torch.nn.Linear(13, 1)
            self.opt = torch.optim.SGD(self.lin.parameters(), lr=0.1)

        def stage(self, batch: Any) -> Any:
            return tuple(torch.from_numpy(x) for x in batch)

        def train_step(self, staged: Any) -> None:
            x, y = staged
            self.opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(self.lin(x).squeeze(1), y).backward()
            self.opt.step()

        def infer(self, staged: Any) -> Any:
            with torch.no_grad():
                return torch.sigmoid(self.lin(staged[0]))

    model = TorchTiny()
    staged = [model.stage(b) for b in _batches(5)]
    res = profiling.torch_profiler_trace(model, staged, tmp_path, phase="train", warmup=2)
    assert res["steps"] == 3
    trace = json.loads(Path(res["trace"]).read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"train step 0", "train step 2"} <= names
    assert any("addmm" in str(n) or "linear" in str(n) for n in names)
    assert "Name" in Path(res["ops"]).read_text()
    res = profiling.torch_profiler_trace(model, staged, tmp_path / "inf", phase="infer", warmup=1)
    assert "infer step 3" in {e.get("name") for e in json.loads(Path(res["trace"]).read_text())["traceEvents"]}
    with pytest.raises(UsageError):
        profiling.torch_profiler_trace(model, staged[:2], tmp_path, warmup=2)


def test_tf_trace_writes_xplane(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")

    class TfTiny(_TinyRecommender):
        framework = "tf"

        def __init__(self) -> None:
            super().__init__(tf)
            self.w = tf.Variable(tf.zeros([13, 1]))

        def stage(self, batch: Any) -> Any:
            return tuple(tf.constant(x) for x in batch)

        def train_step(self, staged: Any) -> None:
            x, y = staged
            with tf.GradientTape() as tape:
                logits = tf.squeeze(tf.matmul(x, self.w), 1)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
            self.w.assign_sub(0.1 * tape.gradient(loss, self.w))

        def infer(self, staged: Any) -> Any:
            return tf.sigmoid(tf.matmul(staged[0], self.w))

    model = TfTiny()
    staged = [model.stage(b) for b in _batches(4)]
    res = profiling.tf_profiler_trace(model, staged, tmp_path, phase="train", warmup=1)
    assert res["steps"] == 3
    xplanes = [f for f in res["files"] if f.endswith(".xplane.pb")]
    assert xplanes and Path(xplanes[0]).stat().st_size > 0


def _tiny_scenario(framework: str) -> Scenario:
    from recsys_impls.config import build_scenario

    return build_scenario({
        "model": {"table_sizes": [50, 20, 30], "embedding_dim": 4, "bottom_mlp": [8, 4], "top_mlp": [8, 1]},
        "train": {"batch_size": 32, "steps": 100, "eval_samples": 64, "warmup_steps": 1},
        "scenario": {"framework": framework},
    })


@pytest.mark.slow
def test_profile_scenario_end_to_end_pyspy(tmp_path: Path) -> None:
    """The CLI's path: the scenario goes to a child through JSON, and only its loop is profiled."""
    pytest.importorskip("torch")
    try:
        written = profiling.profile_scenario(_tiny_scenario("torch"), tmp_path, pyspy=True, rate=200)
    except ScenarioUnsupported as exc:
        pytest.skip(str(exc))
    names = {Path(p).name for p in written}
    assert {"pyspy_torch_train.svg", "pyspy_torch_train.speedscope.json"} <= names
    for p in written:
        assert Path(p).stat().st_size > 0
    stacks = profiling.read_collapsed((tmp_path / "pyspy_torch_train.collapsed.txt").read_text())
    assert any(any("_profiled_loop" in f for f in k) for k in stacks)
