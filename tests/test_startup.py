"""A quiet terminal: TensorFlow's C++ start-up lines stay out of a CLI run unless --verbose asks for them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_impls import asv_driver
from recsys_impls.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
TINY = ["run", "--framework", "tf", "--preset", "tiny", "--steps", "5", "--eval-samples", "2000", "--quiet"]
# absl's pre-initialisation banner and glog-style lines: I0000 00:00:17... port.cc:153] oneDNN ...
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:\d\d)", re.M)

pytestmark = pytest.mark.skipif(not __import__("importlib").util.find_spec("tensorflow"),
                                reason="tensorflow is not installed")


def _cli(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI's own default, not tox's
    return subprocess.run([sys.executable, "-m", "recsys_impls", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


def test_flags_exist():
    for command in ("run", "bench"):
        args = build_parser().parse_args([command, "--verbose"])
        assert args.verbose is True
        assert build_parser().parse_args([command]).verbose is False
    for flag in ("--preset", "--steps", "--eval-samples", "--quiet", "--verbose"):
        assert flag in build_parser()._subparsers._group_actions[0].choices["run"].format_help()


def test_tf_run_prints_no_startup_lines_and_leaves_no_log(tmp_path):
    proc = _cli(*TINY, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not TF_LOG.findall(proc.stderr), proc.stderr
    assert "oneDNN" not in proc.stderr and "cuInit" not in proc.stderr
    assert not list(tmp_path.glob("recsys-tf-start-*.log"))


def test_verbose_shows_them(tmp_path):
    proc = _cli(*TINY, "--verbose", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert TF_LOG.search(proc.stderr), "no TensorFlow start-up lines: the quiet test above would prove nothing"


def test_a_failure_after_the_start_names_the_kept_log(tmp_path):
    proc = _cli(*TINY, "--device", "GPU:7", tmp=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: device GPU:7"), proc.stderr
    logs = list(tmp_path.glob("recsys-tf-start-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[1]
    assert TF_LOG.search(logs[0].read_text())
    assert not TF_LOG.findall(proc.stderr)


@pytest.mark.parametrize("verbose", [False, True])
def test_bench_shows_benchmark_stderr_only_when_verbose(verbose, monkeypatch, tmp_path):
    calls = []

    class Done:
        returncode = 0

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return Done()

    from recsys_impls.measure import fingerprint

    monkeypatch.setattr(fingerprint, "environment_fingerprint", dict)
    monkeypatch.setattr(asv_driver, "repo_root", lambda: tmp_path)
    (tmp_path / "asv.conf.json").write_text("{}")
    monkeypatch.setattr(asv_driver, "_git_head", lambda root: "0" * 40)
    monkeypatch.setattr(asv_driver.subprocess, "run", fake_run)
    monkeypatch.setattr(asv_driver.signals, "run_child", lambda cmd, **kw: fake_run(cmd).returncode)
    assert asv_driver.run(quick=True, machine="m", report=False, verbose=verbose) == 0
    asv_run = next(c for c in calls if "run" in c[3:4])
    assert ("--show-stderr" in asv_run) is verbose
    assert "--quick" not in asv_run  # time_* benchmarks keep their own sample counts
