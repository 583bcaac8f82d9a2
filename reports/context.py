"""What every page builder gets: the asv rows, the records, machines, and choices from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from reports.asv_results import ResultStore


@dataclass
class Context:
    store: ResultStore
    records: pd.DataFrame
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_machine: str | None = None
    factor: float = 1.1
    nightly: list[dict[str, Any]] = field(default_factory=list)  # A/A nights (reports.nightly history)
    unstable: dict[str, Any] = field(default_factory=dict)  # the nightly job's unstable list

    @property
    def rows(self) -> pd.DataFrame:
        return self.store.rows

    def commit_dates(self) -> dict[str, float]:
        """Commit (full and 8-char) -> asv date, so records filed under short hashes sort too."""
        out: dict[str, float] = {}
        if self.rows.empty:
            return out
        for c, d in self.rows[["commit", "date"]].drop_duplicates().itertuples(index=False):
            out[c] = d
            out[str(c)[:8]] = d
        return out

    def latest_records(self) -> pd.DataFrame:
        from reports.records import latest_records

        recs = self.records
        if recs.empty:
            return recs
        if "status" in recs:
            recs = recs[recs["status"].fillna("ok") == "ok"]
        return latest_records(recs, self.commit_dates())


def not_ok_reasons(ctx: Context, suite: str) -> list[str]:
    """'failed (why)' / 'skipped (why)' for each newest-commit record of the suite that has no figures:
    the page counts them in one line instead of showing rows of blanks."""
    from reports.records import latest_records

    recs = ctx.records
    if recs.empty or "status" not in recs:
        return []
    latest = latest_records(recs, ctx.commit_dates())
    bad = latest[(latest["status"].fillna("ok") != "ok") & (latest.get("suite") == suite)]
    out = []
    for status, rec in zip(bad["status"], bad["record"], strict=True):
        why = str(rec.get("error") or "no reason recorded") if isinstance(rec, dict) else "no reason recorded"
        why = why.strip().splitlines()[0] if why.strip() else "no reason recorded"
        out.append(f"{status} ({why[:80]})")
    return out


def asv_pivot(rows: pd.DataFrame, module: str) -> pd.DataFrame:
    """Latest results of one asv module as (machine, params...) x metric values."""
    from reports.asv_results import latest_per_machine

    sub = latest_per_machine(rows)
    sub = sub[(sub["module"] == module) & (sub["status"] == "ok")]
    if sub.empty:
        return pd.DataFrame()
    recs = []
    for (machine, _pkey), g in sub.groupby(["machine", "param_key"]):
        rec: dict[str, Any] = {"machine": machine, **g.iloc[0]["params"]}
        for metric, value in zip(g["metric"], g["value"], strict=False):
            rec[metric] = value
        recs.append(rec)
    return pd.DataFrame(recs)
