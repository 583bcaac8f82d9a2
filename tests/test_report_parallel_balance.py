"""The parallel page's fault/balance/consistency section: what it reads from the records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from recsys_impls.parallel import staleness
from reports.pages import parallel

DATA = Path(__file__).parent / "data"


class _Ctx:
    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def latest_records(self) -> pd.DataFrame:
        return pd.DataFrame([{"machine": "m", "framework": r["framework"], "record": r} for r in self.records])


def _ps_record() -> dict:
    dist = staleness.distribution([0, 0, 1, 0, 2, 1, 0, 0], workers=2)
    return {"framework": "tf", "parallel": {"mode": "ps", "world_size": 2, "balance": {"mode": "static"},
                                            "consistency": {"staleness": dist, "auc_delta_vs_sync": 0.004}}}


def test_balance_table_reads_adaptive_and_async_records() -> None:
    adaptive = {"framework": "torch", "parallel": json.loads((DATA / "parallel_adaptive_section.json").read_text())}
    ctx = _Ctx([adaptive, _ps_record(), {"framework": "torch", "train": {}}])
    df = parallel.balance_table(ctx).set_index("mode")
    assert list(df.index) == ["ddp", "ps"]  # the record without a parallel section is not a row
    dp, ps = df.loc["ddp"], df.loc["ps"]
    eff = adaptive["parallel"]["balance_effect"]
    assert dp["straggler"] == "rank 1 x2.0" and dp["balance"] == "adaptive"
    assert dp["vs_static_throughput"] == eff["throughput_ratio"]
    assert dp["imbalance_before"] == adaptive["parallel"]["balance"]["imbalance_first_window"]
    assert dp["imbalance_after"] == adaptive["parallel"]["balance"]["imbalance_last_window"]
    assert bool(dp["replicas_identical"]) is True
    assert ps["staleness_max"] == 2 and ps["stale_fraction"] == 3 / 8 and ps["auc_delta_vs_sync"] == 0.004
    plot = parallel._staleness_plot(ctx)
    assert plot is not None and "8 updates" in plot.caption


def test_no_distributed_records_no_section() -> None:
    ctx = _Ctx([{"framework": "torch", "train": {}}])
    assert parallel.balance_table(ctx).empty and parallel._staleness_plot(ctx) is None
