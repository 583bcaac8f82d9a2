"""Faults end cleanly: a signal ends the whole process tree, removes the run's folders and says so in one
line (exit 128 + N); a crashed worker is one line naming rank, phase and cause, with the logs kept.

Each CLI run gets a private TMPDIR and log folder, and a tag in its environment that every process of
its tree inherits: "nothing left" means no live process carries the tag.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from recsys_impls.parallel import launch, procs

ROOT = Path(__file__).resolve().parents[1]
TAG = "RECSYS_FAULT_TEST_TAG"
SHORT = ["--preset", "tiny", "--eval-samples", "2000", "--quiet"]


def tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``TAG=tag``."""
    return sorted(procs.marked(f"{TAG}={tag}"))


class CliRun:
    """One ``python -m recsys_impls`` subprocess with its own TMPDIR, log folder and tag."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.tag = uuid.uuid4().hex
        self.tmp = tmp_path / "tmp"
        self.logs = tmp_path / "logs"
        self.tmp.mkdir()
        full_env = {**os.environ, "TMPDIR": str(self.tmp), "RECSYS_LOG_DIR": str(self.logs), TAG: self.tag,
                    "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("RECSYS_KEEP_RUN_DIR", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "recsys_impls", *args], cwd=ROOT, env=full_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.stdout = self.stderr = ""

    def wait_until(self, ready, what: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None:
                self.finish(0)
                pytest.fail(f"the run ended (code {self.proc.returncode}) before {what}: {self.stderr[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout_s:.0f}s")
            time.sleep(0.2)

    def in_phase(self, phase: str) -> bool:
        return any(f.read_text().strip() == phase for f in self.tmp.glob("recsys-parallel-*/rank*.phase"))

    def loaded(self, library: str) -> bool:
        try:
            return library in (Path("/proc") / str(self.proc.pid) / "maps").read_text()
        except OSError:
            return False

    def finish(self, timeout_s: float = 60.0) -> int:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout_s or None)
        return self.proc.returncode

    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def leftovers(self) -> list[int]:
        """Tagged processes still alive, after a short settling wait (zombies being reaped by init)."""
        deadline = time.monotonic() + 2.0
        while tagged(self.tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        return tagged(self.tag)

    def run_dirs(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith(("recsys-parallel-", "torchelastic_")))

    def cleanup(self) -> None:
        """Whatever the test's outcome: end the run and anything it left (so a failure is not an orphan)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        procs.terminate(procs.marked(f"{TAG}={self.tag}"), grace_s=1.0)


def _interrupted(run: CliRun) -> None:
    os.kill(run.proc.pid, signal.SIGTERM)
    code = run.finish()
    assert code == 128 + signal.SIGTERM, run.stderr[-3000:]
    lines = run.lines()
    assert len(lines) == 1 and lines[0].startswith("interrupted by SIGTERM"), run.stderr[-3000:]
    assert run.leftovers() == []
    assert run.run_dirs() == []


def test_sigterm_single_process_run(tmp_path: Path) -> None:
    run = CliRun(tmp_path, ["run", "--framework", "torch", *SHORT, "--steps", "5000"])
    try:
        run.wait_until(lambda: run.loaded("libtorch_cpu"), "torch loaded")
        time.sleep(1.0)
        _interrupted(run)
    finally:
        run.cleanup()


# Rank 0 hangs on reaching its training phase (fault injection), so the signal always lands mid-training
# while the other ranks wait in their collectives, whatever the machine's speed.
@pytest.mark.slow
@pytest.mark.parametrize("framework, mode", [
    ("torch", "ddp:2"),
    ("torch", "sharded:2:table-wise"),
    ("tf", "ddp:2"),
    ("tf", "sharded:2:table-wise"),  # ParameterServerStrategy: chief + 2 workers + 2 ps servers
])
def test_sigterm_distributed_run_ends_the_tree(tmp_path: Path, framework: str, mode: str) -> None:
    pytest.importorskip("tensorflow" if framework == "tf" else "torch")
    if framework == "torch" and mode.startswith("sharded"):
        pytest.importorskip("torchrec")
    run = CliRun(tmp_path, ["run", "--framework", framework, "--parallel", mode, *SHORT, "--steps", "20"],
                 env={launch.FAULT_ENV: "hang:0"})
    try:
        run.wait_until(lambda: run.in_phase("train"), "rank in phase 'train'")
        time.sleep(0.5)
        _interrupted(run)
    finally:
        run.cleanup()


@pytest.mark.slow
def test_worker_killed_mid_training_is_one_line_with_logs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = CliRun(tmp_path, ["run", "--framework", "torch", "--parallel", "ddp:2", *SHORT, "--steps", "20"],
                 env={launch.FAULT_ENV: "kill:1"})
    try:
        code = run.finish(timeout_s=300)
        lines = run.lines()
        assert code == 1 and len(lines) == 1, run.stderr[-3000:]
        line = lines[0]
        assert line.startswith("error: distributed run failed: rank 1 was killed by SIGKILL in phase 'train'"), line
        log_dir = Path(line.rsplit("(logs: ", 1)[1].rstrip(")"))
        assert log_dir.parent == run.logs and log_dir.is_dir()
        assert "WorkerFailed" in (log_dir / "traceback.txt").read_text()
        assert "rank 1 was killed by SIGKILL" in (log_dir / "failure.txt").read_text()
        assert (log_dir / "rank1.phase").read_text() == "train"
        assert run.leftovers() == []
        assert run.run_dirs() == []
    finally:
        run.cleanup()


# What torchrun printed when rank 1 was SIGKILLed and rank 0 then failed in its collective: torchrun names
# rank 0 as the root cause; the crash is the cause.
TORCHRUN_SUMMARY = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
recsys_impls.torch_impl.distributed_worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-01_19:37:51
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 10366)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 10366
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-01_19:37:51
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 10365)
  error_file: <N/A>
============================================================
"""


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "logs"
    monkeypatch.setenv("RECSYS_LOG_DIR", str(root))
    return root


def _notes(run_dir: Path, rank: str, phase: str, error: str = "", stderr: str = "") -> None:
    run_dir.mkdir(exist_ok=True)
    (run_dir / f"rank{rank}.phase").write_text(phase)
    if error:
        (run_dir / f"rank{rank}.error").write_text(error)
    (run_dir / f"rank{rank}.stderr").write_text(stderr or f"rank {rank} output\n")


def test_a_crash_outranks_the_collective_errors_it_causes(tmp_path: Path, log_root: Path) -> None:
    run = tmp_path / "run"
    _notes(run, "0", "train", "RuntimeError: Connection closed by peer")
    _notes(run, "1", "train")
    (run / "torchrun.launcher-stderr").write_text(TORCHRUN_SUMMARY)
    err = launch._failure(run, proc=launch.Proc("torchrun", []), code=1)
    assert str(err).startswith("distributed run failed: rank 1 was killed by SIGKILL in phase 'train' (logs: ")
    assert (err.rank, err.phase, err.cause, err.exit_code) == ("1", "train", "was killed by SIGKILL", 1)
    assert err.log_dir is not None and err.log_dir.parent == log_root
    kept = sorted(p.name for p in err.log_dir.iterdir())
    assert kept == ["failure.txt", "rank0.error", "rank0.phase", "rank0.stderr", "rank1.phase", "rank1.stderr",
                    "torchrun.launcher-stderr"]
    assert "\n" not in str(err)


def test_a_rank_that_raised_on_bad_input_is_a_user_error(tmp_path: Path, log_root: Path) -> None:
    run = tmp_path / "run"
    _notes(run, "0", "data", "DataFormatError: day.tsv:3: 12 columns; expected 40")
    _notes(run, "1", "data")
    err = launch._failure(run, proc=launch.Proc("worker 0", [], rank="0"), code=1)
    assert "rank 0 raised in phase 'data': DataFormatError: day.tsv:3" in str(err)
    assert err.user_error and err.exit_code == 2


def test_a_dead_server_is_named_as_a_server(tmp_path: Path, log_root: Path) -> None:
    run = tmp_path / "run"
    _notes(run, "0", "train")
    _notes(run, "ps0", "done")
    err = launch._failure(run, proc=launch.Proc("ps 0", [], server=True, rank="ps0"), code=-9)
    assert str(err).startswith("distributed run failed: ps 0 was killed by SIGKILL while serving")
    assert err.rank == "ps0" and err.exit_code == 1


def test_a_launcher_that_died_alone_is_named(tmp_path: Path, log_root: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "torchrun.launcher-stderr").write_text("ValueError: bad rendezvous endpoint\n")
    err = launch._failure(run, proc=launch.Proc("torchrun", []), code=1)
    assert "torchrun exited with code 1: ValueError: bad rendezvous endpoint" in str(err)


def test_log_folders_are_pruned_to_the_newest(tmp_path: Path, log_root: Path) -> None:
    from recsys_impls import logs

    made = [logs.new_dir("x") for _ in range(logs.KEEP + 5)]
    assert all(made) and len(list(log_root.iterdir())) == logs.KEEP
    assert made[-1].is_dir() and not made[0].is_dir()


def _main_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    from recsys_impls import cli

    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_run", boom)
    return cli.main(["run"])


def test_cli_reports_a_worker_failure_in_one_line(tmp_path: Path, log_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "kept"
    folder.mkdir()
    exc = launch.WorkerFailed(f"distributed run failed: rank 1 raised in phase 'train': X (logs: {folder})", "1",
                              details="--- rank 1 stderr:\nX", phase="train", log_dir=folder)
    assert _main_with(monkeypatch, exc) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: distributed run failed: rank 1") and "Traceback" not in err
    text = (folder / "traceback.txt").read_text()
    assert "Traceback" in text and "--- rank 1 stderr:" in text
    exc = launch.WorkerFailed("distributed run failed: rank 0 raised in phase 'data': UsageError: x", "0",
                              user_error=True)
    assert _main_with(monkeypatch, exc) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(traceback: " in err


def test_cli_reports_an_unexpected_error_in_one_line_naming_the_traceback(
        log_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main_with(monkeypatch, RuntimeError("boom\nsecond line")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: RuntimeError: boom (traceback: ")
    path = Path(err.rsplit("(traceback: ", 1)[1].strip().rstrip(")"))
    assert path.parent.parent == log_root and "RuntimeError: boom" in path.read_text()
