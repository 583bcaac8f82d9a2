"""Load the full run records (.asv/records/<machine>/<commit>/<slug>.json) into a flat table.

Records come from several issues and land at different times, so every section is optional: a
missing section gives NaN columns, never an error. Unreadable JSON is bad input (exit 2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError

# Sections flattened as "<section>.<key>" columns (scalars only; lists stay in "record").
SECTIONS = ("quality", "throughput", "latency_ms", "size", "memory", "energy", "compression", "parallel")


def scenario_axes(scenario: Any) -> dict[str, Any]:
    """Flatten a record's scenario into axis -> scalar (nested dicts with a "name" give that name)."""
    out: dict[str, Any] = {}
    if not isinstance(scenario, dict):
        return out
    for key, value in scenario.items():
        if isinstance(value, dict):
            if "name" in value and not isinstance(value["name"], dict):
                out[key] = value["name"]
            elif key == "data" and "source" in value:
                out[key] = value["source"]
            for sub, v in value.items():
                if isinstance(v, (str, int, float, bool)) or v is None:
                    out.setdefault(f"{key}.{sub}", v)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
    return out


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record -> one flat row (axes, then section.key scalars)."""
    row: dict[str, Any] = {"framework": record.get("framework"), "status": record.get("status", "ok")}
    for k, v in scenario_axes(record.get("scenario")).items():
        row.setdefault(k, v)
    row["framework"] = record.get("framework") or row.get("framework")
    for section in SECTIONS:
        sec = record.get(section)
        if isinstance(sec, dict):
            for k, v in sec.items():
                if isinstance(v, (str, int, float, bool)) or v is None:
                    row[f"{section}.{k}"] = v
    energy = record.get("energy")
    if isinstance(energy, dict):  # the runner nests NVML figures per timed window: energy.train / energy.infer
        for phase in ("train", "infer"):
            sec = energy.get(phase)
            if isinstance(sec, dict):
                for k, v in sec.items():
                    if isinstance(v, (str, int, float, bool)) or v is None:
                        row[f"energy.{phase}.{k}"] = v
                        if phase == "train":  # the training window is the headline figure
                            row.setdefault(f"energy.{k}", v)
    env = record.get("env") or {}
    fp = env.get("fingerprint") if isinstance(env, dict) else None
    row["fingerprint"] = fp if isinstance(fp, dict) else (env if isinstance(env, dict) else {})
    row["record"] = record
    return row


def load_records(records_dir: str | os.PathLike[str] | None) -> pd.DataFrame:
    """Every record under records_dir; an absent directory gives an empty table (pages say so)."""
    if records_dir is None:
        return pd.DataFrame()
    root = Path(records_dir)
    if not root.exists():
        return pd.DataFrame()
    if not root.is_dir():
        raise UsageError(f"--records {root}: not a directory; give the records folder (default .asv/records)")
    rows = []
    for path in sorted(root.glob("*/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--records {root}: unreadable record {path}: {exc}") from None
        if not isinstance(record, dict):
            raise UsageError(f"--records {root}: {path} is not a JSON object")
        row = flatten(record)
        asv_meta = record.get("asv") if isinstance(record.get("asv"), dict) else {}
        row["machine"] = asv_meta.get("machine") or path.parent.parent.name
        row["commit"] = asv_meta.get("commit") or path.parent.name
        row["suite"] = asv_meta.get("suite") or path.stem.split("-")[0]
        row["file"] = str(path)
        rows.append(row)
    return pd.DataFrame(rows)


def machine_fingerprints(records_dir: str | os.PathLike[str] | None, records: pd.DataFrame) -> dict[str, dict]:
    """Per machine: <records>/<machine>/fingerprint.json if present, else the first record's fingerprint."""
    out: dict[str, dict] = {}
    if records_dir is not None and Path(records_dir).is_dir():
        for fp in sorted(Path(records_dir).glob("*/fingerprint.json")):
            try:
                out[fp.parent.name] = json.loads(fp.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"--records {records_dir}: unreadable {fp}: {exc}") from None
    if not records.empty and "fingerprint" in records:
        for machine, fp in zip(records["machine"], records["fingerprint"], strict=False):
            if machine not in out and isinstance(fp, dict) and fp:
                out[machine] = fp
    return out


def latest_records(records: pd.DataFrame, commit_dates: dict[str, float] | None = None) -> pd.DataFrame:
    """Per machine, the records of its newest commit (by asv date when known, else folder order)."""
    if records.empty:
        return records
    dates = commit_dates or {}
    keep = []
    for _machine, sub in records.groupby("machine"):
        commits = list(dict.fromkeys(sub["commit"]))
        best = max(commits, key=lambda c: (dates.get(c, float("-inf")), commits.index(c)))
        keep.append(sub[sub["commit"] == best])
    return pd.concat(keep)
