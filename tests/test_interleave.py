"""Interleaved framework comparison: A B A B blocks through the one timed loop, one ratio per block pair."""

from __future__ import annotations

import pytest

from recsys_impls import cli, interleave


def test_compare_interleaves_and_reports_pairs(monkeypatch):
    order = []
    real_loop = interleave.timed_loop

    def spy(step, inputs, **kw):
        order.append(kw.get("steps"))
        return real_loop(step, inputs, **kw)

    monkeypatch.setattr(interleave, "timed_loop", spy)
    res = interleave.compare(("torch:amp-bf16", "torch"), "tiny", "train", blocks=5, steps_per_block=2)
    assert order == [3, 3] + [2] * 10  # warm-up of each, then 5 rounds of one block per side
    assert res["sides"] == ["torch:amp-bf16", "torch:fp32"]
    assert res["ratio_pairs"] == 5 and res["ratio"] > 0
    assert res["ratio_ci_low"] <= res["ratio"] <= res["ratio_ci_high"]
    assert res["step_ms"]["torch:fp32"]["n"] == res["step_ms"]["torch:amp-bf16"]["n"] == 10
    assert "torch:amp-bf16/torch:fp32 time ratio" in interleave.render(res)


@pytest.mark.slow
def test_frameworks_compare_under_the_same_thread_settings(tmp_path):
    """Both frameworks in one fresh process (TensorFlow fixes its pools once per process), one thread each."""
    import json
    import subprocess
    import sys

    out = tmp_path / "cmp.json"
    proc = subprocess.run([sys.executable, "-m", "recsys_impls", "compare", "--frameworks", "tf,torch", "--preset",
                           "tiny", "--blocks", "5", "--steps-per-block", "2", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tf:fp32/torch:fp32 time ratio" in proc.stdout
    res = json.loads(out.read_text())
    assert res["ratio_pairs"] == 5 and res["step_ms"]["tf:fp32"]["n"] == 10
    threads = res["threads"]
    assert threads["torch"]["intra_op"] == threads["tf"]["intra_op"] == 1
    assert threads["torch"]["inter_op"] == threads["tf"]["inter_op"]


def test_too_few_pairs_have_no_interval_and_precisions_compare():
    res = interleave.compare(("torch:amp-bf16", "torch"), "tiny", "infer", blocks=2, steps_per_block=2)
    assert res["sides"] == ["torch:amp-bf16", "torch:fp32"]
    assert res["ratio_ci_low"] is None and "fewer than 5" in res["ratio_ci_reason"]


def test_a_compressed_model_compares_against_its_fp32_baseline():
    """``torch@int8``: the compressed model (finalized to its int8 tables at the first inference) and the
    plain one, timed on the same batches in alternating blocks."""
    res = interleave.compare(("torch@int8", "torch"), "tiny", "infer", blocks=2, steps_per_block=2)
    assert res["sides"] == ["torch:fp32@int8", "torch:fp32"]
    assert res["step_ms"]["torch:fp32@int8"]["n"] == res["step_ms"]["torch:fp32"]["n"] == 4
    from recsys_impls import benchsupport as bs

    int8, _, _ = bs.timing_fixture("torch", "tiny", compression="int8")
    plain, _, _ = bs.timing_fixture("torch", "tiny")
    assert int8.storage_bytes()["embedding"] < plain.storage_bytes()["embedding"] / 2  # int8 rows + row scales
    assert "huge_pages" in res


@pytest.mark.parametrize("argv, message", [
    (["compare", "--frameworks", "torch"], "two different"),
    (["compare", "--frameworks", "torch,torch:fp32"], "two different"),
    (["compare", "--frameworks", "torch:fp9,tf"], "FRAMEWORK[:PRECISION]"),
    (["compare", "--frameworks", "torch@int9,torch"], "unknown method 'int9'"),
    (["compare", "--frameworks", "torch@int8,torch@int8"], "two different"),
    (["compare", "--threads", "-1"], "--threads -1"),
    (["compare", "--precision", "fp8"], "--precision"),
    (["compare", "--phase", "eval", "--blocks", "1"], "--phase eval"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # one error line (a later "note:" may name TensorFlow's start-up log when an earlier test started it)
    assert err[0].startswith("error:") and message in err[0]
    assert all(line.startswith("note: TensorFlow's start-up") for line in err[1:])
