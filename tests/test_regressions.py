"""`python -m reports regressions`: verdict logic, CLI exit codes, and the planted slowdown."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports.__main__ import main
from reports.regressions import Thresholds, judge

STORE = Path(__file__).parent / "fixtures" / "asv" / "store"
RESULTS = STORE / "results"
COMMITS = json.loads((STORE / "commits.json").read_text())


def _row(metric: str, value: float | None, samples: list[float] | None = None, btype: str = "time",
         status: str = "ok", version: str = "v1") -> pd.Series:
    from asv_runner.statistics import compute_stats

    stats = compute_stats(samples, 1)[1] if samples else {}
    return pd.Series({"metric": metric, "type": btype, "value": value, "status": status, "version": version,
                      "ci_lo": stats.get("ci_99_a"), "ci_hi": stats.get("ci_99_b"), "q25": stats.get("q_25"),
                      "q75": stats.get("q_75"), "repeat": stats.get("repeat"), "number": stats.get("number"),
                      "samples": samples})


def _noisy(center: float, n: int = 20, spread: float = 0.03, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


TH = Thresholds()


def test_same_distribution_is_not_flagged() -> None:
    a, b = _noisy(1.0, seed=1), _noisy(1.0, seed=2)
    assert judge(_row("time_train_step", 1.0, a), _row("time_train_step", 1.0, b), TH)[0] == "same"


def test_clear_slowdown_is_flagged_with_stats() -> None:
    a, b = _noisy(1.0, seed=1), _noisy(1.3, seed=2)
    verdict, why = judge(_row("time_train_step", 1.0, a), _row("time_train_step", 1.3, b), TH)
    assert verdict == "regressed" and "Mann-Whitney" in why


def test_significant_but_small_change_is_not_flagged() -> None:
    # 5% slower and statistically clear, but under the 1.1 factor: not a regression.
    a, b = _noisy(1.0, spread=0.005, seed=1), _noisy(1.05, spread=0.005, seed=2)
    assert judge(_row("time_train_step", 1.0, a), _row("time_train_step", 1.05, b), TH)[0] == "same"


def test_large_but_overlapping_change_is_not_flagged() -> None:
    # medians 20% apart but the samples overlap heavily: asv's test says not different.
    a = [1.0, 1.4, 0.9, 1.5, 1.0, 1.3]
    b = [1.2, 1.0, 1.5, 0.95, 1.4, 1.2]
    assert judge(_row("time_train_step", 1.0, a), _row("time_train_step", 1.2, b), TH)[0] == "same"


def test_factor_only_without_samples() -> None:
    assert judge(_row("track_x_seconds", 1.0, btype="track"), _row("track_x_seconds", 1.2, btype="track"),
                 TH)[0] == "regressed"
    assert judge(_row("track_x_seconds", 1.0, btype="track"), _row("track_x_seconds", 1.05, btype="track"),
                 TH)[0] == "same"


def test_quality_uses_absolute_thresholds() -> None:
    # track_auc_gap is 1-AUC: +0.002 is an AUC drop of 0.002 > 0.001
    base, worse, tiny = _row("track_auc_gap", 0.200, btype="track"), _row("track_auc_gap", 0.202, btype="track"), \
        _row("track_auc_gap", 0.2005, btype="track")
    assert judge(base, worse, TH)[0] == "regressed"
    assert judge(base, tiny, TH)[0] == "same"
    assert judge(base, worse, Thresholds(auc_drop=0.005))[0] == "same"
    assert judge(_row("track_logloss", 0.45, btype="track"), _row("track_logloss", 0.452, btype="track"),
                 TH)[0] == "regressed"


def test_higher_is_better_metrics_are_inverted() -> None:
    assert judge(_row("track_scaling_efficiency", 0.9, btype="track"),
                 _row("track_scaling_efficiency", 0.6, btype="track"), TH)[0] == "regressed"
    assert judge(_row("track_scaling_efficiency", 0.6, btype="track"),
                 _row("track_scaling_efficiency", 0.9, btype="track"), TH)[0] == "improved"


def test_failures_skips_and_changed_code() -> None:
    assert judge(_row("time_a", 1.0), _row("time_a", None, status="failed"), TH)[0] == "regressed"
    assert judge(_row("time_a", None, status="failed"), _row("time_a", 1.0), TH)[0] == "fixed"
    assert judge(_row("time_a", 1.0), _row("time_a", float("nan"), status="skipped"), TH)[0] == "skipped"
    assert judge(_row("time_a", 1.0), _row("time_a", 2.0, version="v2"), TH)[0] == "incomparable"


def _cli(*args: str) -> int:
    return main(["regressions", "--results", str(RESULTS), "--machine", "toy-2threads", *args])


def test_planted_slowdown_flagged_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md = tmp_path / "summary.md"
    assert _cli("--base", COMMITS["base"][:8], "--head", COMMITS["slow"][:7], "--markdown", str(md)) == 1
    out = capsys.readouterr().out
    flagged = [ln for ln in out.splitlines() if ln.strip().startswith("regressed") and "time_train_step" in ln]
    assert len(flagged) == 4
    text = md.read_text()
    assert text.startswith("# Benchmark regressions") and "time_train_step" in text and "regression(s)" in text


def test_same_commit_is_clean_exit_0(tmp_path: Path) -> None:
    md = tmp_path / "s.md"
    assert _cli("--base", COMMITS["rerun"], "--head", COMMITS["rerun"], "--markdown", str(md)) == 0
    assert "No regressions" in md.read_text()


def test_refs_may_be_result_files() -> None:
    files = {p.name[:8]: p for p in (RESULTS / "toy-2threads").glob("*-*.json")}
    assert main(["regressions", "--base", str(files[COMMITS["base"][:8]]),
                 "--head", str(files[COMMITS["slow"][:8]])]) == 1


@pytest.mark.parametrize("args, needle", [
    (["--base", "deadbeef", "--head", COMMITS["base"][:8]], "no results for this commit"),
    (["--base", "not-a-ref", "--head", COMMITS["base"][:8]], "not a commit hash"),
    (["--base", "missing.json", "--head", COMMITS["base"][:8]], "no such results file"),
    (["--base", COMMITS["base"][:8], "--head", COMMITS["slow"][:8], "--factor", "0.5"], "--factor"),
])
def test_bad_refs_exit_2(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err


def test_several_machines_need_machine_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regressions", "--results", str(RESULTS), "--base", COMMITS["base"], "--head",
                 COMMITS["slow"]]) == 2
    assert "--machine" in capsys.readouterr().err


def test_unreadable_results_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    victim = next((results / "toy-2threads").glob(COMMITS["slow"][:8] + "-*.json"))
    victim.write_text("{broken")
    assert main(["regressions", "--results", str(results), "--machine", "toy-2threads",
                 "--base", COMMITS["base"], "--head", COMMITS["slow"]]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_commits_subcommand_lists_oldest_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["commits", "--results", str(RESULTS), "--machine", "toy-2threads"]) == 0
    assert capsys.readouterr().out.split() == [COMMITS["base"], COMMITS["rerun"], COMMITS["slow"]]
    assert main(["commits", "--results", str(RESULTS)]) == 2  # two machines: must pick one


def test_identical_non_positive_values_are_never_flagged():
    """asv's ratio test calls -4e-6 vs -4e-6 'worse' (x < x / 1.1 for negatives); ours must not."""
    import pandas as pd

    from reports.regressions import Thresholds, judge

    def row(metric, value):
        return pd.Series({"status": "ok", "version": "v", "value": value, "metric": metric, "type": "track",
                          "ci_lo": float("nan"), "ci_hi": float("nan"), "q25": float("nan"), "q75": float("nan"),
                          "repeat": float("nan"), "number": float("nan"), "samples": None})

    th = Thresholds()
    assert judge(row("track_sampler_wall_overhead", -0.61), row("track_sampler_wall_overhead", -0.61), th)[0] == "same"
    w = "track_sampler_wall_overhead"
    assert judge(row(w, -0.5), row(w, 0.5), th)[0] == "regressed"
    assert judge(row("track_sampler_wall_overhead", 0.5), row("track_sampler_wall_overhead", -0.5), th)[0] == "improved"
    # AUC lost to compression is judged like 1-AUC: an absolute threshold, never a ratio.
    assert judge(row("track_auc_loss", -4e-6), row("track_auc_loss", -4e-6), th)[0] == "same"
    assert judge(row("track_auc_loss", 0.0001), row("track_auc_loss", 0.0030), th)[0] == "regressed"


def test_regressed_list_names_what_to_rerun(tmp_path: Path) -> None:
    """nightly.sh re-runs exactly these benchmarks to confirm a regression."""
    listing = tmp_path / "regressed.txt"
    assert _cli("--base", COMMITS["base"][:8], "--head", COMMITS["slow"][:7], "--regressed-list", str(listing)) == 1
    names = listing.read_text().splitlines()
    assert "bench_core.TrainStep.time_train_step" in names and len(names) == len(set(names))
    assert names == sorted(names) and all(" " not in n for n in names)
    clean = tmp_path / "none.txt"
    assert _cli("--base", COMMITS["rerun"], "--head", COMMITS["rerun"], "--regressed-list", str(clean)) == 0
    assert clean.read_text() == ""


def _with_values(tmp_path: Path, commit: str, benchmark: str, values: dict[int, float | None]) -> Path:
    """A copy of the store where ``benchmark``'s results at ``commit`` have some values replaced, as asv
    writes a failure (None) or a skip (NaN)."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    path = next((results / "toy-2threads").glob(commit[:8] + "-*.json"))
    data = json.loads(path.read_text())
    for i, v in values.items():
        data["results"][benchmark][0][i] = v
    path.write_text(json.dumps(data))
    return results


def test_a_number_that_becomes_a_failure_is_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = "bench_core.Quality.track_auc_gap"
    results = _with_values(tmp_path, COMMITS["rerun"], bench, {0: None})  # framework=torch, data=synthetic
    listing = tmp_path / "regressed.txt"
    code = main(["regressions", "--results", str(results), "--machine", "toy-2threads", "--base", COMMITS["base"],
                 "--head", COMMITS["rerun"], "--regressed-list", str(listing)])
    out = capsys.readouterr().out
    assert code == 1 and bench in listing.read_text().splitlines()
    row = next(ln for ln in out.splitlines() if bench in ln and "framework=torch, data=synthetic" in ln)
    assert row.split()[0] == "regressed" and "now fails" in row and "n/a" in row


def test_a_failure_where_base_skipped_is_shown_not_hidden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two copies of one run, so nothing else differs: the skip at base becomes a failure at head."""
    bench = "bench_core.Quality.track_auc_gap"
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    source = next((results / "toy-2threads").glob(COMMITS["rerun"][:8] + "-*.json"))
    sides = {}
    for side, value in (("base", float("nan")), ("head", None)):
        data = json.loads(source.read_text())
        data["results"][bench][0][2] = value  # (framework, data) in product order: tf, synthetic
        sides[side] = results / "toy-2threads" / f"{side}-copy.json"
        sides[side].write_text(json.dumps(data))
    code = main(["regressions", "--base", str(sides["base"]), "--head", str(sides["head"]), "--only-changed"])
    out = capsys.readouterr().out
    assert code == 0  # not a regression of head: it did not run at base either
    row = next(ln for ln in out.splitlines() if bench in ln and "framework=tf, data=synthetic" in ln)
    assert row.split()[0] == "failed" and "fails (skipped before)" in row
    assert "0 regression(s)" in out and "1 failing that did not run at base either" in out


def test_failed_verdicts() -> None:
    assert judge(_row("time_a", float("nan"), status="skipped"), _row("time_a", None, status="failed"),
                 TH) == ("failed", "fails (skipped before)")
    assert judge(_row("time_a", None, status="failed"), _row("time_a", None, status="failed"),
                 TH) == ("failed", "still fails")


def test_two_machines_are_refused_unless_asked(capsys: pytest.CaptureFixture[str]) -> None:
    one = next((RESULTS / "toy-1thread").glob(COMMITS["base"][:8] + "-*.json"))
    two = next((RESULTS / "toy-2threads").glob(COMMITS["slow"][:8] + "-*.json"))
    assert main(["regressions", "--base", str(one), "--head", str(two)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "machine toy-1thread" in err and "machine toy-2threads" in err and "--cross-machine" in err
    assert main(["regressions", "--base", str(one), "--head", str(two), "--cross-machine"]) in (0, 1)
    assert capsys.readouterr().out.startswith("note: comparing two machines (base toy-1thread, head toy-2threads)")


@pytest.mark.parametrize("cmd", [["build", "--out", "OUT"], ["regressions", "--machine", "toy-2threads", "--base",
                                                               COMMITS["base"], "--head", COMMITS["slow"]]])
def test_results_without_machine_json_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             cmd: list[str]) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "toy-2threads" / "machine.json").unlink()
    args = [a.replace("OUT", str(tmp_path / "site")) for a in cmd]
    assert main([args[0], "--results", str(results), *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "toy-2threads holds asv results files but no machine.json" in err
