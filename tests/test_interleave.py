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
    res = interleave.compare(("tf", "torch"), "tiny", "train", blocks=5, steps_per_block=2, threads=1)
    assert order == [3, 3] + [2] * 10  # warm-up of each, then 5 rounds of one block per framework
    assert res["ratio_pairs"] == 5 and res["ratio"] > 0
    assert res["ratio_ci_low"] <= res["ratio"] <= res["ratio_ci_high"]
    assert res["sides"] == ["tf:fp32", "torch:fp32"]
    assert res["step_ms"]["tf:fp32"]["n"] == res["step_ms"]["torch:fp32"]["n"] == 10
    assert res["threads"]["torch"]["intra_op"] == 1 and res["threads"]["tf"]["intra_op"] == 1
    assert "tf:fp32/torch:fp32 time ratio" in interleave.render(res)


def test_too_few_pairs_have_no_interval_and_precisions_compare():
    res = interleave.compare(("torch:amp-bf16", "torch"), "tiny", "infer", blocks=2, steps_per_block=2, threads=1)
    assert res["sides"] == ["torch:amp-bf16", "torch:fp32"]
    assert res["ratio_ci_low"] is None and "fewer than 5" in res["ratio_ci_reason"]


@pytest.mark.parametrize("argv, message", [
    (["compare", "--frameworks", "torch"], "two different"),
    (["compare", "--frameworks", "torch,torch:fp32"], "two different"),
    (["compare", "--frameworks", "torch:fp9,tf"], "FRAMEWORK[:PRECISION]"),
    (["compare", "--threads", "-1"], "--threads -1"),
    (["compare", "--precision", "fp8"], "--precision"),
    (["compare", "--phase", "eval", "--blocks", "1"], "--phase eval"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
