"""Thread settings: one policy for both frameworks, really applied, recorded as the framework reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_impls import threads
from recsys_impls.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env: str) -> dict:
    """Run code in a fresh interpreter (thread pools are per process); it prints one JSON line last."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_default_is_the_cpus_this_process_may_use_and_one_inter_op_thread():
    s = threads.resolve(0)
    assert s.intra_op == len(os.sched_getaffinity(0))
    assert s.inter_op == 1
    assert s.env == {"OMP_NUM_THREADS": str(s.intra_op), "MKL_NUM_THREADS": str(s.intra_op)}
    assert threads.resolve(3) == threads.ThreadSettings(3, 1, {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"})


def test_default_follows_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs an affinity API and at least two CPUs")
    out = _python("import os, json; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
                  "from recsys_impls import threads; print(json.dumps(threads.resolve(0).intra_op))")
    assert out == 1


@pytest.mark.parametrize("threads_, inter", [(-1, 1), (2, 0)])
def test_bad_counts_are_usage_errors(threads_, inter):
    with pytest.raises(UsageError, match="threads must be >= 0"):
        threads.resolve(threads_, inter)


# The model's construction applies the policy (the single-process path); the framework's own getters,
# read after real work, must report it.
_BUILD = """
import json
from dataclasses import replace
from recsys_impls import registry, threads
from recsys_impls.benchsupport import scenario_for
from recsys_impls.data.loader import load_dataset
s = scenario_for("{fw}")
s = replace(s, device=replace(s.device, threads={threads}))
impl = registry.build(s)
bs = s.train.batch_size
data = load_dataset(s, num_train=bs, num_eval=bs)
impl.train_step(impl.stage(data.train))
impl.synchronize()
{getters}
print(json.dumps({{"live": live, "record": threads.record_section("{fw}")}}))
"""
_GETTERS = {
    "torch": "import torch; live = [torch.get_num_threads(), torch.get_num_interop_threads()]",
    "tf": "import tensorflow as tf; live = [tf.config.threading.get_intra_op_parallelism_threads(), "
          "tf.config.threading.get_inter_op_parallelism_threads()]",
}


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_construction_applies_the_settings(framework):
    intra = 1  # differs from both frameworks' default (every CPU) on any machine with more than one core
    out = _python(_BUILD.format(fw=framework, threads=intra, getters=_GETTERS[framework]))
    assert out["live"] == [intra, 1]
    rec = out["record"]
    assert (rec["framework"], rec["intra_op"], rec["inter_op"]) == (framework, intra, 1)
    assert rec["requested"] == {"intra_op": intra, "inter_op": 1}


def test_torch_inter_op_is_fixed_once_and_a_later_request_is_recorded_not_raised():
    out = _python("""
import json, torch
from recsys_impls import threads
from recsys_impls.torch_impl.settings import apply_threads
first = apply_threads(threads.resolve(2))
torch.ones(64, 64) @ torch.ones(64, 64)
second = apply_threads(threads.resolve(1, inter_op=3))
print(json.dumps({"first": first, "second": second, "record": threads.record_section("torch")}))
""")
    assert out["first"]["errors"] == [] and (out["first"]["intra_op"], out["first"]["inter_op"]) == (2, 1)
    second = out["second"]
    assert (second["intra_op"], second["inter_op"]) == (1, 1)  # intra-op can change, inter-op cannot
    assert second["requested"] == {"intra_op": 1, "inter_op": 3}
    assert "inter-op threads stay 1" in second["errors"][0]
    assert "inter-op threads stay 1" in out["record"]["reason"]


def test_tf_pools_fixed_at_context_start_and_an_explicit_conflict_is_unsupported():
    out = _python("""
import json
import tensorflow as tf
from recsys_impls import threads
from recsys_impls.config import DeviceConfig
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.tf_impl import runtime
first = runtime.apply_threads(threads.resolve(2))
tf.constant(1.0) + 1.0  # the context starts with those pools
later = runtime.apply_threads(threads.resolve(1))
same = runtime.configure(DeviceConfig(threads=2)).facts
try:
    runtime.configure(DeviceConfig(threads=1))
    conflict = None
except ScenarioUnsupported as exc:
    conflict = str(exc)
print(json.dumps({"first": first, "later": later, "same": same, "conflict": conflict}))
""")
    assert (out["first"]["intra_op"], out["first"]["inter_op"], out["first"]["errors"]) == (2, 1, [])
    assert (out["later"]["intra_op"], out["later"]["inter_op"]) == (2, 1)
    assert "intra-op threads stay 2" in out["later"]["errors"][0]
    assert (out["same"]["intra_op_threads"], out["same"]["inter_op_threads"]) == (2, 1)
    assert "threads=1" in out["conflict"] and "fresh process" in out["conflict"]


def test_record_section_shape(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    rec = threads.record_section("tf")
    assert set(rec) == {"framework", "intra_op", "inter_op", "requested", "env", "env_source", "reason"}
    assert rec["framework"] == "tf" and rec["intra_op"] is None and rec["inter_op"] is None
    assert "not loaded" in rec["reason"]
    assert set(rec["env"]) == {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    assert rec["env"]["OPENBLAS_NUM_THREADS"] == "1" and rec["env_source"]["OPENBLAS_NUM_THREADS"] == "user"
    json.dumps(rec)
    with pytest.raises(UsageError, match="accepted: torch, tf"):
        threads.record_section("jax")


def test_export_env_keeps_a_users_value_and_says_where_each_came_from(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    for name in ("MKL_NUM_THREADS", threads.MARKER_VAR):  # absent, and restored to their state afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    exported = threads.export_env(threads.resolve(2))
    assert exported == {"MKL_NUM_THREADS": "2"}
    assert os.environ["OMP_NUM_THREADS"] == "7" and os.environ["MKL_NUM_THREADS"] == "2"
    values, sources = threads.env_section()
    assert values["OMP_NUM_THREADS"] == "7" and sources["OMP_NUM_THREADS"] == "user"
    assert sources["MKL_NUM_THREADS"] == "recsys_impls"
    # A child process (asv, a worker) tells them apart too.
    child = _python("import json; from recsys_impls import threads; print(json.dumps(threads.env_section()[1]))")
    assert child["OMP_NUM_THREADS"] == "user" and child["MKL_NUM_THREADS"] == "recsys_impls"
