"""Failures are failures: a failed scenario is FAILED in asv (skips stay skips), `bench` exits non-zero and
says how many failed, `reports regressions` counts a number turning into a failure, and an interrupted
`bench` ends asv's benchmark processes and the launcher groups inside them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from recsys_impls import asv_driver, signals
from recsys_impls import benchsupport as bs
from recsys_impls.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_require_ok_fails_failed_records_and_skips_skipped_ones() -> None:
    ok = {"status": "ok", "quality": {}}
    assert bs.require_ok(ok) is ok
    with pytest.raises(NotImplementedError, match="not in the quick subset"):
        bs.require_ok({"status": "skipped", "error": "not in the quick subset"})
    for record, reason in (({"status": "failed", "error": "RuntimeError: boom"}, "boom"), (None, "not run")):
        with pytest.raises(bs.ScenarioFailed, match=reason) as err:
            bs.require_ok(record)
        assert not isinstance(err.value, NotImplementedError)  # asv would show it as skipped


@pytest.fixture
def records_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("RECSYS_MACHINE", "toy")
    monkeypatch.setenv("ASV_COMMIT", "abc123")
    return bs.records_dir_for(tmp_path, "toy", "abc123")


def test_run_and_record_records_a_failure_but_lets_a_signal_through(records_env: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys_impls import runner

    scenario = bs.scenario_for("torch")

    def crash(sc, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_scenario", crash)
    record = bs.run_and_record("core", {"framework": "torch"}, scenario)
    assert record["status"] == "failed" and "boom" in record["error"]
    assert bs.failed_records(records_env) == [("core--framework=torch", "RuntimeError: boom")]

    def interrupted(sc, **kw):
        raise signals.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(runner, "run_scenario", interrupted)
    # in-process, ending "this process's tree" would hit whatever else the test session started
    monkeypatch.setattr(signals.Scope, "end_tree", lambda self, grace_s=0.0: None)
    with pytest.raises(signals.Interrupted):
        bs.run_and_record("core", {"framework": "tf"}, scenario)
    assert not (records_env / "core--framework=tf.json").exists()


def test_failed_records_counts_only_this_run(records_env: Path) -> None:
    old = bs.save_record({"status": "failed", "error": "old"}, "core", {"framework": "tf"})
    os.utime(old, (1, 1))
    since = time.time() - 1
    bs.save_record({"status": "failed", "error": "new\nsecond line"}, "core", {"framework": "torch"})
    bs.save_record({"status": "skipped", "error": "why"}, "core", {"framework": "jax"})
    bs.save_record({"status": "ok"}, "core", {"framework": "numpy"})
    assert bs.failed_records(records_env, since) == [("core--framework=torch", "new\nsecond line")]


@pytest.mark.parametrize("asv_code, failed, expect", [(0, 0, 0), (2, 1, 1), (2, 0, 1), (0, 2, 1)])
def test_bench_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                           asv_code: int, failed: int, expect: int) -> None:
    from recsys_impls.measure import fingerprint

    (tmp_path / "asv.conf.json").write_text("{}")
    monkeypatch.setenv("ASV_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(fingerprint, "environment_fingerprint", lambda: {})
    monkeypatch.setattr(asv_driver.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, stdout="abc123\n"))

    def fake_asv(cmd, env, **kw):
        for i in range(failed):  # what the benchmark processes save while asv runs
            folder = bs.records_dir_for(tmp_path, env["RECSYS_MACHINE"], env["ASV_COMMIT"])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"core--case={i}.json").write_text(json.dumps({"status": "failed", "error": f"E{i}: why"}))
        return asv_code

    monkeypatch.setattr(asv_driver.signals, "run_child", fake_asv)
    assert asv_driver.run(quick=True, machine="toy", report=False) == expect
    err = capsys.readouterr().err
    if failed:
        assert f"bench: {failed} scenario(s) failed; the others ran and were saved:" in err
        assert "core--case=0: E0: why" in err
    elif asv_code:
        assert "asv exited with code 2" in err
    else:
        assert err == ""


def test_bench_refuses_a_bad_regex_in_one_line() -> None:
    with pytest.raises(UsageError, match=r"--bench '\(': not a valid regular expression"):
        asv_driver.run(bench="(")


# --- the real thing: asv on a toy project -------------------------------------------------------------

ASV_CONF = {"version": 1, "project": "toy", "project_url": "https://example.invalid/", "repo": ".",
            "branches": ["main"], "environment_type": "existing", "benchmark_dir": "benchmarks",
            "results_dir": ".asv/results", "html_dir": ".asv/html", "env_dir": ".asv/env"}

TOY = textwrap.dedent('''
    """One scenario per case; TOY_BREAK=<case> makes that case's scenario fail."""
    import os

    from recsys_impls import benchsupport as bs

    CASES = ["ok", "skipped", "failed"]


    class Toy:
        params = [CASES]
        param_names = ["case"]

        def setup_cache(self):
            out = {}
            for case in CASES:
                status = "failed" if os.environ.get("TOY_BREAK") == case else case
                record = {"status": "ok", "value": 0.25} if status == "ok" else {"status": status, "error": f"{case}!"}
                bs.save_record(record, "toy", {"case": case})
                out[case] = record
            return out

        def setup(self, records, case):
            self.r = bs.require_ok(records[case])

        def track_auc_gap(self, records, case):
            return self.r["value"]
''')

HANG = textwrap.dedent('''
    """A scenario the way run_and_record runs a distributed one: signal policy, launcher group, run folder."""
    import os, shutil, sys, tempfile
    from pathlib import Path

    from recsys_impls import signals
    from recsys_impls.parallel import launch


    class Hang:
        def setup_cache(self):
            with signals.policy():
                run_dir = Path(tempfile.mkdtemp(prefix="recsys-parallel-"))
                try:
                    (Path(os.environ["TOY_READY"])).write_text("ready")
                    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
                    launch.run_group([launch.Proc(f"rank {r}", sleeper) for r in range(2)], run_dir, 600)
                finally:
                    shutil.rmtree(run_dir, ignore_errors=True)
            return {}

        setup_cache.timeout = 600

        def track_never(self, records):
            return 1.0
''')


def _project(tmp_path: Path, name: str, source: str) -> tuple[Path, dict[str, str]]:
    proj = tmp_path / "proj"
    (proj / "benchmarks").mkdir(parents=True)
    (proj / "asv.conf.json").write_text(json.dumps(ASV_CONF))
    (proj / "benchmarks" / "__init__.py").write_text("")
    (proj / "benchmarks" / f"{name}.py").write_text(source)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "tmp").mkdir()
    # asv drops PYTHONPATH in its benchmark processes; ASV_PYTHONPATH puts this checkout first there.
    env = {**os.environ, "ASV_CONF_DIR": str(proj), "HOME": str(home), "PYTHONPATH": str(ROOT),
           "ASV_PYTHONPATH": str(ROOT),
           "TMPDIR": str(tmp_path / "tmp"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    _commit(proj, env, "toy project")
    return proj, env


def _commit(proj: Path, env: dict[str, str], message: str) -> str:
    if not (proj / ".git").is_dir():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=proj, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=proj, env=env, check=True)
    if not (proj / ".gitignore").exists():
        (proj / ".gitignore").write_text(".asv/\n")
        subprocess.run(["git", "add", "-A"], cwd=proj, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "files"], cwd=proj, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=proj, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def _bench(proj: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys_impls", "bench", "--quick", "--no-report", "--machine",
                           "toy"], cwd=proj, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_failed_scenario_is_failed_in_asv_counted_by_bench_and_a_regression(tmp_path: Path) -> None:
    from reports.__main__ import main as reports_main
    from reports.asv_results import load_store

    proj, env = _project(tmp_path, "bench_toy", TOY)
    base = _commit(proj, env, "base")
    first = _bench(proj, env)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "bench: 1 scenario(s) failed" in first.stderr and "toy--case=failed: failed!" in first.stderr
    head = _commit(proj, env, "head")
    second = _bench(proj, {**env, "TOY_BREAK": "ok"})
    assert second.returncode == 1 and "bench: 2 scenario(s) failed" in second.stderr, second.stderr[-3000:]

    rows = load_store(proj / ".asv" / "results").rows
    status = {(r.commit[:8], r.params["case"]): r.status for r in rows.itertuples()}
    assert status == {(base[:8], "ok"): "ok", (base[:8], "skipped"): "skipped", (base[:8], "failed"): "failed",
                      (head[:8], "ok"): "failed", (head[:8], "skipped"): "skipped", (head[:8], "failed"): "failed"}
    listing = tmp_path / "regressed.txt"
    code = reports_main(["regressions", "--results", str(proj / ".asv" / "results"), "--base", base, "--head", head,
                         "--regressed-list", str(listing)])
    assert code == 1 and listing.read_text() == "bench_toy.Toy.track_auc_gap\n"


def _tree(tag: str) -> list[int]:
    from recsys_impls.parallel import procs

    return sorted(procs.marked(f"RECSYS_BENCH_TEST_TAG={tag}"))


@pytest.mark.slow
def test_interrupted_bench_ends_asv_and_the_groups_inside_it(tmp_path: Path) -> None:
    from recsys_impls.parallel import procs

    proj, env = _project(tmp_path, "bench_hang", HANG)
    tag = uuid.uuid4().hex
    ready = tmp_path / "ready"
    env = {**env, "RECSYS_BENCH_TEST_TAG": tag, "TOY_READY": str(ready)}
    proc = subprocess.Popen([sys.executable, "-m", "recsys_impls", "bench", "--quick", "--no-report", "--machine",
                             "toy"], cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (ready.exists() and len(_tree(tag)) >= 5):  # asv, its server, the benchmark, 2 sleepers
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM")
        deadline = time.monotonic() + 2
        while _tree(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _tree(tag) == []
        assert not list((tmp_path / "tmp").glob("recsys-parallel-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        procs.terminate(procs.marked(f"RECSYS_BENCH_TEST_TAG={tag}"), grace_s=1.0)
