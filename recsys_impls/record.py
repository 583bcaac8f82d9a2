"""The result record: one type for the runner, every distributed worker's per-rank result and the reports.

A record is a JSON object of plain types (no framework objects: a pickled record must never import a
framework to load, and JSON has no NaN), with a schema version, a status and the sections the README
documents. ``Record`` is a ``dict`` so every reader keeps working on plain mappings; what it adds is
the one place where records are cleaned, validated, saved atomically and loaded.

Schema versions:
  1  figures without sample statistics (the first release).
  2  every time figure carries its statistics (``train.step_ms``, ``infer.batch_ms``,
     ``latency_ms.stats``: n, median, min/max, bootstrap CI), plus ``threads``, ``roofline`` and ``flags``.
Readers accept both; ``load`` tells them which one they have.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls import hugepages

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("ok", "skipped", "failed", "interrupted")
# Sections a record of status "ok" always has (each may hold nulls with a reason, never be absent).
OK_SECTIONS = ("framework", "scenario", "quality", "throughput", "latency_ms", "size", "memory", "energy", "env")


class RecordError(ValueError):
    """A record that does not follow the schema (where, and what is wrong)."""


def clean(value: Any) -> Any:
    """JSON-safe plain types: NaN/inf become None (the reason sits beside them), str subclasses
    (torch's TorchVersion) plain str, numpy scalars Python numbers, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, np.generic):
        return clean(value.item())
    return value


def timestamp(epoch_s: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch_s is None else epoch_s))


class Record(dict):
    """One scenario's result (or one rank's, with ``kind="rank"``)."""

    @classmethod
    def new(cls, scenario: Any, status: str = "ok", **sections: Any) -> Record:
        """A record for ``scenario`` (a Scenario or its dict) with the given sections."""
        sc = scenario.to_dict() if hasattr(scenario, "to_dict") else dict(scenario)
        rec = cls(schema_version=SCHEMA_VERSION, status=status, framework=sc.get("framework"), scenario=sc)
        rec.update(sections)
        return rec

    @classmethod
    def failed(cls, scenario: Any, error: BaseException, status: str | None = None) -> Record:
        """What a failed or unsupported scenario leaves behind: its axes and why, so nothing else is lost."""
        from recsys_impls.errors import ScenarioUnsupported

        if status is None:
            status = "skipped" if isinstance(error, ScenarioUnsupported) else "failed"
        return cls.new(scenario, status=status, error=f"{type(error).__name__}: {error}"[:2000])

    def cleaned(self) -> Record:
        return Record(clean(dict(self)))

    def to_plain(self) -> dict[str, Any]:
        """A plain, JSON-safe dict (what asv's setup_cache pickles)."""
        return clean(dict(self))

    def add_flag(self, figure: str, kind: str, detail: str) -> bool:
        """A figure that should not be believed as it stands (see the module function ``add_flag``)."""
        return add_flag(self, figure, kind, detail)

    def validate(self, where: str = "record") -> Record:
        """Raise RecordError naming the first thing that does not follow the schema."""
        validate(self, where)
        return self

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temporary file, then rename): a crash never leaves half a record."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_plain(), indent=1, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], strict: bool = True) -> Record:
        """Read a record of any readable schema version; RecordError if it is not one.

        ``strict=False`` only requires a JSON object (readers of old or partial stores, like the reports,
        take each section as optional).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}: a record is a JSON object, found {type(data).__name__}")
        return cls(data).validate(str(path)) if strict else cls(data)


def add_flag(record: dict[str, Any], figure: str, kind: str, detail: str) -> bool:
    """Put a flag in ``record["flags"]`` (shown by the report next to the figure): one entry per
    (figure, kind), the newest detail kept. Returns whether the record changed."""
    flags = record.get("flags")
    if not isinstance(flags, list):
        flags = record["flags"] = []
    entry = {"figure": figure, "kind": kind, "detail": detail}
    for i, f in enumerate(flags):
        if isinstance(f, dict) and f.get("figure") == figure and f.get("kind") == kind:
            if f == entry:
                return False
            flags[i] = entry
            return True
    flags.append(entry)
    return True


def validate(record: dict[str, Any], where: str = "record") -> None:
    """The schema's rules, for records of every readable version."""
    version = record.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise RecordError(f"{where}: schema_version {version!r}; readable versions are {READABLE_VERSIONS}")
    status = record.get("status", "ok")
    if status not in STATUSES:
        raise RecordError(f"{where}: status {status!r}; accepted: {', '.join(STATUSES)}")
    if status != "ok":
        if not record.get("error"):
            raise RecordError(f"{where}: a {status} record needs an 'error' saying why")
        return
    kind = record.get("kind", "scenario")
    if kind == "serving":  # serve: the model was not measured in training, the served runs are
        for key in ("framework", "scenario", "serving", "env"):
            if key not in record:
                raise RecordError(f"{where}: a serving record needs '{key}'")
        return
    if kind == "rank":
        for key in ("rank", "world_size", "train"):
            if key not in record:
                raise RecordError(f"{where}: a rank result needs '{key}'")
        return
    for key in OK_SECTIONS:
        if key not in record:
            raise RecordError(f"{where}: an ok record needs the '{key}' section")
    if version >= 2:
        if "train" in record and "step_ms" not in (record["train"] or {}):
            raise RecordError(f"{where}: version-2 train section needs 'step_ms' statistics")


def rank_result(rank: int, world_size: int, mode: str, loop_summary: dict[str, Any], local_batch: int,
                **extra: Any) -> Record:
    """One distributed rank's result: the same shape from every worker of every engine."""
    rec = Record(schema_version=SCHEMA_VERSION, kind="rank", status="ok", rank=rank, world_size=world_size,
                 mode=mode, local_batch=local_batch, train=loop_summary)
    # Flat copies the launcher's per-rank table reads.
    for key in ("warmup_steps", "timed_steps", "seconds", "step_ms_mean"):
        rec[key] = loop_summary.get(key)
    step = loop_summary.get("step_ms") or {}
    rec["step_ms_p50"] = step.get("median")
    rec["samples_per_s"] = loop_summary.get("samples_per_s")
    rec["huge_pages"] = hugepages.record_section()
    rec.update(extra)
    return rec
