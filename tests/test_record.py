"""The one Record type: cleaning, validation, atomic save/load, version 1 still readable."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from recsys_impls.config import build_scenario
from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.record import SCHEMA_VERSION, Record, RecordError, clean, rank_result


def _scenario():
    return build_scenario({"scenario": {"framework": "torch"}})


def _ok_record() -> Record:
    sections = {k: {} for k in ("quality", "throughput", "latency_ms", "size", "memory", "energy", "env")}
    return Record.new(_scenario(), train={"step_ms": {"n": 3}}, **sections)


class StrSub(str):
    pass


def test_clean_makes_plain_json_types():
    out = clean({"a": float("nan"), "b": np.float32(1.5), "c": (1, np.int64(2)), "d": StrSub("2.13"),
                 "e": np.arange(3), 4: float("inf")})
    assert out == {"a": None, "b": 1.5, "c": [1, 2], "d": "2.13", "e": [0, 1, 2], "4": None}
    assert type(out["d"]) is str and type(out["b"]) is float


def test_round_trip(tmp_path):
    rec = _ok_record()
    rec["quality"]["auc"] = np.float64(0.75)
    rec.add_flag("train", "roofline-above-1.05", "x")
    rec.add_flag("train", "roofline-above-1.05", "x")
    path = rec.save(tmp_path / "r.json")
    assert not (tmp_path / "r.json.tmp").exists()
    back = Record.load(path)
    assert back["schema_version"] == SCHEMA_VERSION == 2
    assert back["quality"]["auc"] == 0.75 and len(back["flags"]) == 1
    assert back["framework"] == "torch" and back["scenario"]["framework"] == "torch"


def test_pickled_plain_record_needs_no_record_class():
    plain = _ok_record().to_plain()
    assert type(plain) is dict
    assert b"recsys_impls" not in pickle.dumps(plain)


def test_version_1_records_still_load(tmp_path):
    v1 = {"schema_version": 1, "status": "ok", "framework": "tf", "scenario": {},
          **{k: {} for k in ("quality", "throughput", "latency_ms", "size", "memory", "energy", "env")},
          "train": {"seconds": 1.0}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    assert Record.load(tmp_path / "v1.json")["schema_version"] == 1


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(schema_version=9), "schema_version 9"),
    (lambda r: r.update(status="weird"), "status 'weird'"),
    (lambda r: r.pop("quality"), "'quality' section"),
    (lambda r: r["train"].pop("step_ms"), "step_ms"),
    (lambda r: r.update(status="failed"), "needs an 'error'"),
])
def test_validation_names_what_is_wrong(mutate, message):
    rec = _ok_record()
    mutate(rec)
    with pytest.raises(RecordError, match=message):
        rec.validate()


def test_load_rejects_non_records(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(RecordError, match="JSON object"):
        Record.load(tmp_path / "a.json")
    with pytest.raises(RecordError, match="not a readable JSON record"):
        Record.load(tmp_path / "b.json")


def test_failed_and_skipped():
    sc = _scenario()
    assert Record.failed(sc, ScenarioUnsupported("no int8 on cuda"))["status"] == "skipped"
    rec = Record.failed(sc, RuntimeError("boom")).validate()
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: boom"


def test_rank_result_shape_is_shared():
    summary = {"warmup_steps": 2, "timed_steps": 5, "seconds": 0.5, "step_ms_mean": 100.0,
               "step_ms": {"n": 5, "median": 99.0}, "samples_per_s": 640.0}
    rec = rank_result(1, 2, "ddp", summary, 64, threads=1).validate()
    assert rec["kind"] == "rank" and rec["step_ms_p50"] == 99.0 and rec["timed_steps"] == 5
    assert rec["train"]["step_ms"]["n"] == 5 and rec["threads"] == 1
    assert not math.isnan(rec["samples_per_s"])
