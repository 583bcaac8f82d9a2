"""Load the full run records (.asv/records/<machine>/<commit>/<slug>.json) into a flat table.

Records come from several issues and land at different times, so every section is optional: a
missing section gives NaN columns, never an error. Unreadable JSON is bad input (exit 2).
Schema version 1 (no "schema_version" key, or 1) has no per-step statistics; version 2 adds
train.step_ms / infer.batch_ms / latency_ms.stats (n, median, 99% CI), threads, roofline and flags.
Both load into the same columns; what a v1 record lacks is NaN.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from recsys_impls.errors import UsageError

# Sections flattened as "<section>.<key>" columns (scalars only; lists stay in "record").
SECTIONS = ("quality", "throughput", "latency_ms", "size", "memory", "energy", "compression", "parallel")
# Version-2 sections whose nested dicts are flattened too: train.step_ms.median, roofline.train.fraction,
# threads.env.OMP_NUM_THREADS, latency_ms.stats.n ...
NESTED = ("train", "infer", "latency_ms", "threads", "roofline")
# A roofline fraction above this is not physically possible: the peak or the operation count is wrong.
ROOFLINE_LIMIT = 1.05
PHASES = ("train", "infer")


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _nested(prefix: str, d: dict[str, Any], row: dict[str, Any], depth: int = 3) -> None:
    for k, v in d.items():
        if isinstance(v, dict) and depth > 1:
            _nested(f"{prefix}.{k}", v, row, depth - 1)
        elif _scalar(v):
            row[f"{prefix}.{k}"] = v


def roofline_label(score: Any) -> str:
    """ "0.93 of compute bound" from a roofline Score; "" when there is none."""
    if not isinstance(score, dict):
        return ""
    frac, bound = score.get("fraction"), score.get("bound")
    if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not math.isfinite(frac):
        return f"n/a ({score.get('reason')})" if score.get("reason") else ""
    text = f"{frac:.2f} of {bound or '?'} bound"
    if frac > ROOFLINE_LIMIT:
        text += f" - FLAG: above {ROOFLINE_LIMIT}"
    return text


def record_flags(record: dict[str, Any]) -> list[dict[str, str]]:
    """The record's own flags, plus a roofline flag for any fraction above ROOFLINE_LIMIT that the
    record did not flag itself (so an old writer's missing flag cannot hide it)."""
    flags = [f for f in record.get("flags") or [] if isinstance(f, dict)]
    roof = record.get("roofline") if isinstance(record.get("roofline"), dict) else {}
    for phase in PHASES:
        score = roof.get(phase)
        frac = score.get("fraction") if isinstance(score, dict) else None
        if isinstance(frac, (int, float)) and not isinstance(frac, bool) and frac > ROOFLINE_LIMIT:
            figure = f"roofline.{phase}.fraction"
            if not any(f.get("figure") == figure for f in flags):
                flags.append({"figure": figure, "kind": f"roofline-above-{ROOFLINE_LIMIT}",
                              "detail": f"{frac:.2f} of the {score.get('bound', '?')} bound"})
    return flags


def flags_text(flags: list[dict[str, str]]) -> str:
    return "; ".join(f"{f.get('kind', '?')}: {f.get('figure', '?')} ({f.get('detail', '')})" for f in flags)


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
    row["schema_version"] = record.get("schema_version", 1)
    for section in SECTIONS:
        sec = record.get(section)
        if isinstance(sec, dict):
            for k, v in sec.items():
                if _scalar(v):
                    row[f"{section}.{k}"] = v
    for section in NESTED:
        sec = record.get(section)
        if isinstance(sec, dict):
            _nested(section, sec, row)
    roof = record.get("roofline") if isinstance(record.get("roofline"), dict) else {}
    for phase in PHASES:
        label = roofline_label(roof.get(phase))
        if label:
            row[f"roofline.{phase}"] = label
    flags = record_flags(record)
    row["flags"] = flags_text(flags)
    row["flag_list"] = flags
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
        record = read_record(path, f"--records {root}")
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


def read_record(path: Path, where: str) -> dict[str, Any]:
    """One record file, of any schema version; an unreadable one is bad input (one line, exit 2)."""
    from recsys_impls.record import Record, RecordError

    try:
        return dict(Record.load(path, strict=False))
    except RecordError as exc:
        raise UsageError(f"{where}: {exc}") from None
