"""Static against adaptive balancing under the same fault, interleaved A B A B (one ratio per pair).

``python -m recsys_impls.parallel.balance_pairs --parallel ddp:2 --straggler 1:2 --pairs 5 --preset tiny``

Each pair runs the static plan, then the adaptive one, through the same launcher (no 1-process
baseline); a shared machine's drift cancels within a pair. Prints every run (throughput, timed
samples, AUC, imbalance), and the median throughput ratio (adaptive / static) and AUC difference
(adaptive - static) with the 99% bootstrap interval of the median from 5 pairs on.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from recsys_impls.config import PRESETS, Scenario, build_scenario


def _figures(out: dict[str, Any]) -> dict[str, Any]:
    par = out["parallel"]
    bal = par.get("balance") or {}
    return {"samples_per_s": par["train_samples_per_s"], "timed_samples": out["train"].get("timed_samples"),
            "auc": out["quality"].get("auc"), "imbalance": bal.get("imbalance"),
            "imbalance_before": bal.get("imbalance_before", bal.get("imbalance_first_window")),
            "final_shares": bal.get("final_shares"), "assignment": bal.get("assignment"),
            "replan_s": bal.get("replan_s", bal.get("replan_s_total")), "bytes_moved": bal.get("bytes_moved"),
            "step_ms_median_per_phase": {k: (v.get("step_ms") or {}).get("median")
                                         for k, v in (bal.get("phases") or {}).items()} or None}


def _median(values: list[float]) -> dict[str, Any]:
    from recsys_impls.measure.stats import MIN_SAMPLES_FOR_CI, bootstrap_median_ci

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    out: dict[str, Any] = {"n": int(v.size), "median": float(np.median(v)) if v.size else None,
                           "min": float(v.min()) if v.size else None, "max": float(v.max()) if v.size else None}
    if v.size >= MIN_SAMPLES_FOR_CI:
        out["ci_low"], out["ci_high"] = bootstrap_median_ci(v)
    else:
        out["ci_reason"] = f"{v.size} pair(s): fewer than {MIN_SAMPLES_FOR_CI}, no interval"
    return out


def compare(scenario: Scenario, pairs: int, adaptive: str = "adaptive") -> dict[str, Any]:
    """``pairs`` x (static, adaptive) runs of ``scenario`` (its own balance value is replaced)."""
    from recsys_impls.parallel.run import run_distributed

    runs = []
    for i in range(pairs):
        for balance in ("static", adaptive):
            figures = _figures(run_distributed(replace(scenario, balance=balance)))
            runs.append({"pair": i, "balance": balance, **figures})
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    ratios = [runs[2 * i + 1]["samples_per_s"] / runs[2 * i]["samples_per_s"] for i in range(pairs)]
    deltas = [runs[2 * i + 1]["auc"] - runs[2 * i]["auc"] for i in range(pairs)]
    return {"scenario": scenario.to_dict(), "runs": runs, "throughput_ratio": _median(ratios),
            "auc_delta": _median(deltas)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recsys_impls.parallel.balance_pairs")
    p.add_argument("--framework", default="torch")
    p.add_argument("--parallel", default="ddp:2")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--straggler", default="none")
    p.add_argument("--hot-table", default="none")
    p.add_argument("--balance", default="adaptive", help="the adaptive side, e.g. adaptive:10")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="threads per process (default 1)")
    p.add_argument("--optimizer", default=None, help="sgd or adagrad (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    layers = {k: dict(v) for k, v in PRESETS[args.preset].items()}
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size), ("optimizer", args.optimizer),
                       ("learning_rate", args.lr)):
        if value is not None:
            layers.setdefault("train", {})[key] = value
    layers["device"] = {"threads": args.threads}
    layers["data"] = {"hot_table": args.hot_table}
    layers["scenario"] = {"framework": args.framework, "parallel": args.parallel, "straggler": args.straggler,
                          "balance": args.balance}
    from recsys_impls.errors import UsageError

    try:
        scenario = build_scenario(layers)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = compare(scenario, args.pairs, args.balance)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    r, d = result["throughput_ratio"], result["auc_delta"]
    print(f"throughput adaptive/static: median {r['median']:.3f} over {r['n']} pairs (min {r['min']:.3f}, "
          f"max {r['max']:.3f}; 99% CI {r.get('ci_low', 'n/a')} .. {r.get('ci_high', 'n/a')})")
    print(f"AUC adaptive - static: median {d['median']:+.5f} (min {d['min']:+.5f}, max {d['max']:+.5f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
