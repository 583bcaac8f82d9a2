"""Side-by-side comparison of two frameworks (or two precisions, or a compressed model and its fp32
baseline) on the same work, interleaved in one process (A B A B ...).

A ratio taken from two runs minutes apart on a shared machine measures the machine's drift as much as
the code. Here both models are built once, with the same thread settings, and timed in alternating
blocks of steps through the one timed loop; each block pair gives one ratio, so the drift cancels
within a pair. The result is the median ratio with a bootstrap interval over the pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_impls.measure.loop import timed_loop
from recsys_impls.measure.stats import MIN_SAMPLES_FOR_CI, bootstrap_median_ci, summarize_seconds

PHASES = ("train", "infer")


def _step(impl: Any, phase: str) -> Any:
    if phase == "train":
        return impl.train_step
    return lambda s: impl.to_numpy(impl.infer(s))


def parse_side(text: str, precision: str | None = None) -> tuple[str, str, str]:
    """``framework[:precision][@compression]`` -> (framework, precision, compression); the precision defaults
    to ``precision`` or fp32, the compression to none. The compression is one method (``int8``, ``hash:0.1``):
    the comma separates the two sides."""
    from recsys_impls.compression.spec import parse_compression
    from recsys_impls.config import FRAMEWORKS, PRECISIONS
    from recsys_impls.errors import UsageError

    head, _, comp = text.partition("@")
    fw, _, prec = head.partition(":")
    prec = prec or precision or "fp32"
    if fw not in FRAMEWORKS or prec not in PRECISIONS:
        raise UsageError(f"compare: side {text[:60]!r}; accepted: FRAMEWORK[:PRECISION][@COMPRESSION] with FRAMEWORK "
                         f"one of {', '.join(FRAMEWORKS)} and PRECISION one of {', '.join(PRECISIONS)}")
    comp = comp.strip() or "none"
    if comp != "none":
        comp = parse_compression(comp).spec
    return fw, prec, comp


def side_label(fw: str, prec: str, comp: str) -> str:
    return f"{fw}:{prec}" + (f"@{comp}" if comp != "none" else "")


def compare(sides: tuple[str, str] = ("tf", "torch"), preset: str = "dlrm-ref", phase: str = "train",
            blocks: int = 10, steps_per_block: int = 10, threads: int | None = None,
            precision: str | None = None) -> dict[str, Any]:
    """Median per-step time of ``sides[0]`` over ``sides[1]`` (``ratio`` > 1: the first is slower).

    A side is ``framework[:precision][@compression]`` ("tf", "torch:amp-bf16", "torch@int8"): two
    frameworks, one framework at two precisions, or a compressed model against another (or its fp32
    baseline). Both sides get the same thread settings and the same batches.
    """
    from recsys_impls import benchsupport as bs
    from recsys_impls.errors import UsageError

    if phase not in PHASES:
        raise UsageError(f"compare --phase {phase}: accepted: {', '.join(PHASES)}")
    if blocks < 1 or steps_per_block < 1:
        raise UsageError("compare: --blocks and --steps-per-block must be positive integers")
    parsed = [parse_side(side, precision) for side in sides]
    if len(parsed) != 2 or parsed[0] == parsed[1]:
        raise UsageError(f"compare: two different sides are needed, got {', '.join(sides)[:80]}")
    labels = [side_label(*side) for side in parsed]
    fixtures = {}
    for label, (fw, prec, comp) in zip(labels, parsed, strict=True):
        device: dict[str, Any] = {"precision": prec}
        if threads:
            device["threads"] = threads
        fixtures[label] = bs.timing_fixture(fw, preset, compression=comp, **device)
    per_step: dict[str, list[float]] = {label: [] for label in labels}
    block_medians: dict[str, list[float]] = {label: [] for label in labels}
    for label in labels:  # warm-up both before the first timed block
        impl, staged, _ = fixtures[label]
        timed_loop(_step(impl, phase), staged, start=0, steps=3, sync=impl.synchronize)
    for _ in range(blocks):
        for label in labels:
            impl, staged, _ = fixtures[label]
            res = timed_loop(_step(impl, phase), staged, start=0, steps=steps_per_block, sync=impl.synchronize,
                             sync_each_step=phase == "infer")
            per_step[label] += res.step_seconds
            block_medians[label].append(float(np.median(res.step_seconds)))
    a, b = labels
    ratios = np.asarray(block_medians[a]) / np.asarray(block_medians[b])
    out: dict[str, Any] = {
        "sides": labels, "preset": preset, "phase": phase, "blocks": blocks,
        "steps_per_block": steps_per_block, "order": "A B A B ... (one block of each per round)",
        "step_ms": {label: summarize_seconds(per_step[label]) for label in labels},
        "ratio": float(np.median(ratios)), "ratio_pairs": int(ratios.size),
        "batch_size": fixtures[a][2][0].batch_size,
    }
    if ratios.size >= MIN_SAMPLES_FOR_CI:
        out["ratio_ci_low"], out["ratio_ci_high"] = bootstrap_median_ci(ratios)
    else:
        out["ratio_ci_low"] = out["ratio_ci_high"] = None
        out["ratio_ci_reason"] = f"{ratios.size} block pairs: fewer than {MIN_SAMPLES_FOR_CI}, no interval"
    from recsys_impls.threads import record_section

    out["threads"] = {fw: record_section(fw) for fw in sorted({fw for fw, _, _ in parsed})}
    from recsys_impls import hugepages

    out["huge_pages"] = hugepages.record_section()
    return out


def render(result: dict[str, Any]) -> str:
    """A few readable lines."""
    a, b = result["sides"]
    sa, sb = result["step_ms"][a], result["step_ms"][b]
    ci = (f"99% CI {result['ratio_ci_low']:.3f}..{result['ratio_ci_high']:.3f}" if result["ratio_ci_low"] is not None
          else result.get("ratio_ci_reason", ""))
    return "\n".join([
        f"{result['phase']} step, preset {result['preset']}, batch {result['batch_size']}, "
        f"{result['blocks']} rounds x {result['steps_per_block']} steps, interleaved",
        f"  {a}: median {sa['median']:.3f} ms (n={sa['n']})",
        f"  {b}: median {sb['median']:.3f} ms (n={sb['n']})",
        f"  {a}/{b} time ratio {result['ratio']:.3f} over {result['ratio_pairs']} block pairs ({ci})",
    ])
