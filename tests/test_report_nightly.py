"""The nightly gate's own figures: A/A false alarms per suite, the unstable list and its wider factor,
the canary's recall, the interleaved confirmation, and what the history page shows of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reports.__main__ import main
from reports.nightly import smallest_caught
from tests.asv_synth import ENV, TIME, commit_hash, store, write_result

ROOT = Path(__file__).resolve().parents[1]
HEAD = commit_hash(1)


def _run(tmp: Path, name: str, torch_ms: float, canary_ms: float, seed: int, commit: str = HEAD) -> str:
    results = store(tmp)
    path = results.parent / "runs" / name / f"{commit[:8]}-{ENV}.json"
    write_result(path, commit, 1_700_000_000_000, "synth", torch_ms, 14.0, canary_ms, np.random.default_rng(seed))
    (path.parent / "benchmarks.json").write_text((results / "benchmarks.json").read_text())
    return str(path)


def _aa(tmp: Path, first: str, second: str, *extra: str) -> int:
    return main(["aa", "--first", first, "--second", second, "--results", str(tmp / "results"),
                 "--nightly", str(tmp / "nightly"), *extra])


def test_aa_night_counts_false_alarms_per_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _run(tmp_path, "a", 10.0, 5.0, 1), _run(tmp_path, "b", 10.0, 5.0, 2)
    assert _aa(tmp_path, a, b) == 0
    night = json.loads((tmp_path / "nightly" / "history.json").read_text())[-1]
    assert night["suites"]["bench_core"] == {"judged": 4, "flagged": 0, "flagged_list": []}
    assert night["suites"]["bench_canary"]["judged"] == 1 and night["canary"] is None
    assert "A/A bench_core: 0 of 4 flagged (false-alarm rate 0.0%)" in capsys.readouterr().out
    # A drifting night: torch 30% slower in the second run of the same commit is a false alarm...
    c = _run(tmp_path, "c", 13.0, 5.0, 3)
    assert _aa(tmp_path, a, c) == 0
    nights = json.loads((tmp_path / "nightly" / "history.json").read_text())
    assert len(nights) == 2 and nights[-1]["suites"]["bench_core"]["flagged"] == 1
    # ...and makes that scenario unstable: listed with its noise, gated with factor x noise from now on.
    unstable = json.loads((tmp_path / "nightly" / "unstable.json").read_text())["benchmarks"]
    key = f"{TIME} [framework=torch, preset=tiny]"
    assert list(unstable) == [key] and 1.25 < unstable[key]["noise"] < 1.35
    assert unstable[key]["factor"] == pytest.approx(unstable[key]["noise"] * 1.1, rel=1e-3)
    # The next night judges that scenario with its wider factor, and says so.
    assert _aa(tmp_path, a, b) == 0
    night = json.loads((tmp_path / "nightly" / "history.json").read_text())[-1]
    assert night["suites"]["bench_core"]["gated_wider"] == 1


def test_unstable_benchmark_gets_the_wider_factor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "u.json").write_text(json.dumps(
        {"benchmarks": {f"{TIME} [framework=torch, preset=tiny]": {"noise": 1.3, "factor": 1.43}}}))
    base, head = _run(tmp_path, "base", 10.0, 5.0, 4), _run(tmp_path, "head", 12.0, 5.0, 5)
    args = ["regressions", "--base", base, "--head", head, "--results", str(tmp_path / "results")]
    assert main(args) == 1  # 20% slower: beyond x1.1
    assert main([*args, "--unstable", str(tmp_path / "u.json")]) == 0  # within its x1.43
    capsys.readouterr()


def test_canary_slowdown_is_flagged_and_recall_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path, "a", 10.0, 5.0, 6)
    assert _aa(tmp_path, a, _run(tmp_path, "slow", 10.0, 5.0 * 1.3, 7), "--canary", "1.3") == 0
    assert "canary x1.3: flagged" in capsys.readouterr().out
    assert _aa(tmp_path, a, _run(tmp_path, "tiny", 10.0, 5.0 * 1.02, 8), "--canary", "1.02") == 1
    assert "canary x1.02: NOT flagged" in capsys.readouterr().out
    nights = json.loads((tmp_path / "nightly" / "history.json").read_text())
    assert smallest_caught(nights) == 1.3
    # The canary is not counted as an A/A figure on a canary night.
    assert "bench_canary" not in nights[-1]["suites"]


def test_confirmation_keeps_what_every_interleaved_pair_shows(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = commit_hash(0)
    b1, h1 = _run(tmp_path, "b1", 10.0, 5.0, 9, base), _run(tmp_path, "h1", 13.0, 5.0, 10)
    b2, h2 = _run(tmp_path, "b2", 10.0, 5.0, 11, base), _run(tmp_path, "h2", 13.0, 5.0, 12)
    b3, h3 = _run(tmp_path, "b3", 13.0, 5.0, 13, base), _run(tmp_path, "h3", 13.0, 5.0, 14)
    res = ["--results", str(tmp_path / "results")]
    assert main(["confirm", "--pair", b1, h1, "--pair", b2, h2, *res]) == 1
    assert f"confirmed: {TIME} [framework=torch, preset=tiny]" in capsys.readouterr().out
    # The base drifted as much as the head in the second pair: not confirmed.
    assert main(["confirm", "--pair", b1, h1, "--pair", b3, h3, *res, "--markdown", str(tmp_path / "c.md")]) == 0
    assert "not confirmed" in (tmp_path / "c.md").read_text()


def test_history_page_shows_the_measured_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path, "a", 10.0, 5.0, 15)
    assert _aa(tmp_path, a, _run(tmp_path, "calm", 10.0, 5.0, 18)) == 0  # a night without a slowdown
    assert _aa(tmp_path, a, _run(tmp_path, "b", 13.0, 5.0 * 1.5, 16), "--canary", "1.5") == 0
    # the store needs one commit of its own for the report
    write_result(tmp_path / "results" / "synth" / f"{HEAD[:8]}-{ENV}.json", HEAD, 1_700_000_000_000, "synth",
                 10.0, 14.0, 5.0, np.random.default_rng(17))
    out = tmp_path / "site"
    assert main(["build", "--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    hist = (out / "history.html").read_text()
    assert "Nightly gate: false alarms (A/A) and recall (canary)" in hist
    assert "2 night(s), 2 with judged scenarios: 1 of 9 flagged" in hist  # the calm night judged the canary too
    assert "The canary&#39;s own A/A noise: up to x1.0" in hist
    assert json.loads((out / "data" / "nightly_unstable.json").read_text())[0]["benchmark"].startswith(TIME)
    assert "smallest canary slowdown caught every time: x1.5" in (out / "index.html").read_text()
    capsys.readouterr()


def test_canary_benchmark_slowdown_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_canary
    finally:
        sys.path.pop(0)
    monkeypatch.delenv(bench_canary.ENV, raising=False)
    assert bench_canary.slowdown() == 1.0
    monkeypatch.setenv(bench_canary.ENV, "1.3")
    assert bench_canary.slowdown() == 1.3
    assert bench_canary.extra_delay(0.01, 1.3) == pytest.approx(0.003)
    assert bench_canary.extra_delay(0.01, 1.0) == 0.0
    for bad in ("fast", "0.5", "1e9"):
        monkeypatch.setenv(bench_canary.ENV, bad)
        with pytest.raises(ValueError, match=bench_canary.ENV):
            bench_canary.slowdown()


@pytest.mark.parametrize("args", [["--bogus"], ["--canary"], ["--canary", "0.9"], ["--canary", "x"]])
def test_nightly_script_bad_arguments_exit_2(args: list[str]) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "reports" / "nightly.sh"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "nightly.sh" in proc.stderr
