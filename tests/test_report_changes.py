"""`python -m reports changes`: E-Divisive change points over a synthetic 30-commit asv history."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from reports.__main__ import main
from tests.asv_synth import write_history

pytest.importorskip("otava.analysis", reason="apache-otava not installed (pip install apache-otava)")

def _noisy(n: int, ms: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(ms * (1 + 0.03 * rng.standard_normal(n)))


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("stepped")
    torch = _noisy(30, 10.0, 1)
    torch[20:] = [v * 1.3 for v in torch[20:]]  # planted: 30% slower from the 21st commit on
    return root, write_history(root, torch, _noisy(30, 14.0, 2))


def test_planted_step_is_found_at_its_commit(stepped: tuple[Path, list[str]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root, commits = stepped
    assert main(["changes", "--results", str(root / "results")]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert len(lines) == 1, out
    assert "regression" in lines[0] and "time_train_step [framework=torch, preset=tiny]" in lines[0]
    assert f"at {commits[20][:8]}" in lines[0] and "(commit 21 of 30)" in lines[0]
    pct = float(re.search(r"\(([-+][\d.]+)%\)", lines[0]).group(1))
    assert 25 < pct < 35 and float(lines[0].rsplit("p=", 1)[1]) < 0.001  # planted +30%


def test_step_older_than_last_n_commits_does_not_fail(stepped: tuple[Path, list[str]],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = stepped
    assert main(["changes", "--results", str(root / "results"), "--machine", "synth", "--last", "5"]) == 0
    assert "1 change point(s)" in capsys.readouterr().out


def test_improvement_is_not_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = _noisy(30, 10.0, 3)
    torch[25:] = [v * 0.7 for v in torch[25:]]
    write_history(tmp_path, torch, _noisy(30, 14.0, 4))
    assert main(["changes", "--results", str(tmp_path / "results")]) == 0
    assert "improvement" in capsys.readouterr().out


def test_flat_noisy_history_reports_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path, _noisy(30, 10.0, 5), _noisy(30, 14.0, 6))
    assert main(["changes", "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "0 change point(s)" in out and not [ln for ln in out.splitlines() if ln.startswith("  ")]


@pytest.mark.parametrize("args", [["--last", "0"], ["--machine", "nope"], ["--results", "/nonexistent"],
                                  ["--max-pvalue", "2"]])
def test_bad_input_is_one_line_exit_2(args: list[str], stepped: tuple[Path, list[str]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = stepped
    argv = ["changes", "--results", str(root / "results"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and args[0] in err


def test_history_page_marks_the_change_point(stepped: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, commits = stepped
    assert main(["build", "--results", str(root / "results"), "--out", str(tmp_path / "site")]) == 0
    html = (tmp_path / "site" / "history.html").read_text()
    assert "1 found" in html and "Dashed: 1 change point(s)" in html
    assert "1 regression change point(s) in the newest 10 commits" in (tmp_path / "site" / "index.html").read_text()
    rows = json.loads((tmp_path / "site" / "data" / "history_change_points_synth.json").read_text())
    assert [(r["commit"], r["direction"], r["scenario"]) for r in rows] == [
        (commits[20], "regression", "framework=torch, preset=tiny")]
