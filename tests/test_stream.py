"""Streaming input: per-step synthetic batches, the bounded rotation and prefetch queue, the waiting
fraction, the linear-time split, the row cap, the production presets and the memory estimate/refusal."""

from __future__ import annotations

import gc
import time
import weakref
from dataclasses import replace

import numpy as np
import pytest

from recsys_impls import preflight
from recsys_impls.config import PRESETS, ROTATION_BYTES, Scenario, build_scenario
from recsys_impls.data.batch import Batch
from recsys_impls.data.loader import hash_into, prepare
from recsys_impls.data.stream import LoadedBatches, Prefetcher, training_source
from recsys_impls.data.synthetic import SyntheticStream, hidden_model
from recsys_impls.errors import UsageError
from recsys_impls.measure.roofline import input_verdict
from recsys_impls.runner import rotation_size, train

TABLES = (50, 300, 2000)


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return SyntheticStream(hidden_model(4, TABLES, 2, 1.05), seed=3, batch_size=32)


def _tiny(**train_kw) -> Scenario:
    base = build_scenario({"model": {"num_dense": 4, "table_sizes": list(TABLES), "embedding_dim": 4,
                                     "bottom_mlp": [8, 4], "top_mlp": [8, 1]}})
    return replace(base, train=replace(base.train, **train_kw))


class _Counted:
    """A source whose batches count themselves while alive (weakref finalizers), to bound what is held."""

    def __init__(self, inner: SyntheticStream, delay_s: float = 0.0) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.batch_size, self.distinct = inner.batch_size, None
        self.alive = self.max_alive = self.made = 0

    def _gone(self) -> None:
        self.alive -= 1

    def batch(self, index: int) -> Batch:
        if self.delay_s:
            time.sleep(self.delay_s)
        b = self.inner.batch(index)
        self.made += 1
        self.alive += 1
        self.max_alive = max(self.max_alive, self.alive)
        weakref.finalize(b, self._gone)
        return b

    def describe(self) -> dict:
        return {"kind": "test"}


class _FakeImpl:
    """Just enough of a Recommender for runner.train: counts what it stages."""

    def __init__(self, step_s: float = 0.0) -> None:
        self.scenario = Scenario()
        self.staged = 0
        self.step_s = step_s

    def stage(self, batch: Batch) -> Batch:
        self.staged += 1
        return batch

    def train_step(self, staged: Batch) -> None:
        if self.step_s:
            time.sleep(self.step_s)

    def synchronize(self) -> None:
        pass

    def loss(self, staged: Batch) -> float:
        return 0.5


def test_a_step_index_always_gives_the_same_batch(stream):
    again = SyntheticStream(stream.hm, seed=3, batch_size=32)
    a, b, c = stream.batch(7), again.batch(7), stream.batch(8)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.dense, c.dense)
    assert a.batch_size == 32 and a.num_features == len(TABLES)
    assert all(int(a.feature_ids(f).max()) < n for f, n in enumerate(TABLES))


def test_fixed_bags_hold_exactly_their_size():
    hm = hidden_model(3, TABLES, 1, 1.05, (1, 3, 5), (0.9, 1.05, 1.1), "fixed")
    b = SyntheticStream(hm, seed=0, batch_size=16).batch(0)
    assert [set(row.tolist()) for row in b.lengths] == [{1}, {3}, {5}]
    assert hm.params()["zipf_exponents"] == [0.9, 1.05, 1.1]


def test_prefetch_queue_holds_a_bounded_number_of_batches_whatever_the_steps(stream):
    maxima = []
    for steps in (12, 120):
        src = _Counted(stream)
        with Prefetcher(src, steps, depth=3) as pf:
            for _ in range(steps):
                deadline = time.monotonic() + 5
                while not pf._q.full() and pf.produced < steps and time.monotonic() < deadline:
                    time.sleep(0.001)  # let the worker run as far ahead as the queue allows
                pf.get()
            assert pf.max_ahead <= 4
        gc.collect()
        assert src.made == steps
        maxima.append(src.max_alive)
    # queue + the one in production + the one taken, however many steps (an unbounded queue holds ~steps)
    assert max(maxima) <= 3 + 2, maxima


def test_a_failure_in_the_worker_reaches_the_consumer(stream):
    class Broken(_Counted):
        def batch(self, index):
            raise RuntimeError("disk gone")

    with Prefetcher(Broken(stream), 5) as pf, pytest.raises(RuntimeError, match="disk gone"):
        pf.get()


def test_compute_only_stages_a_bounded_rotation_whatever_the_steps(stream, monkeypatch):
    from recsys_impls import runner

    per = stream.batch(0).nbytes
    assert rotation_size(stream, 10**9) * per <= ROTATION_BYTES
    monkeypatch.setattr(runner, "ROTATION_BYTES", 20 * per)
    staged = []
    for steps in (10, 3000):
        impl = _FakeImpl()
        out = train(impl, stream, warmup_steps=2, steps=steps)
        staged.append(impl.staged)
        assert out["timed_steps"] == steps - 2 and out["input"]["staged_batches"] == impl.staged
    assert staged == [10, 20]


def test_loaded_batches_rotate_over_the_split(stream):
    batches = [stream.batch(i) for i in range(3)]
    src = LoadedBatches(batches)
    assert [src.batch(i) is batches[i % 3] for i in range(7)] == [True] * 7
    assert rotation_size(src, 100) == 3


def test_end_to_end_reports_the_wait_on_a_slow_producer(stream):
    out = train(_FakeImpl(), _Counted(stream, delay_s=0.01), warmup_steps=1, steps=12, mode="end-to-end")
    inp = out["input"]
    assert inp["mode"] == "end-to-end" and inp["queue_depth"] >= 1
    assert inp["producer"]["batches"] == 8 and inp["producer"]["samples"] == 8 * 32
    assert inp["wait_fraction"] > 0.5, inp  # a no-op step waits for nearly every batch
    assert input_verdict("end-to-end", inp["wait_fraction"], None, None, "compute")["verdict"] == "input-bound"


def test_verdict_falls_back_to_the_roofline_bound():
    assert input_verdict("end-to-end", 0.01, 1e6, 1e5, "memory")["verdict"] == "memory-bound"
    assert input_verdict("compute-only", None, 1e6, 1e5, "compute")["verdict"] == "compute-bound"
    assert input_verdict("compute-only", None, 1e4, 1e5, "compute")["verdict"] == "input-bound"
    assert input_verdict("compute-only", None, None, None, None)["verdict"] is None


def test_split_is_linear_one_offsets_pass_and_each_id_copied_once(stream, monkeypatch):
    data = Batch.concat([stream.batch(i) for i in range(40)])
    calls = []
    real = Batch.bag_offsets
    monkeypatch.setattr(Batch, "bag_offsets", lambda self: calls.append(1) or real(self))
    parts = data.split(32)
    assert len(calls) == 1 and len(parts) == 40
    assert sum(p.ids.size for p in parts) == data.ids.size


def test_row_cap_applies_to_the_tables_and_is_recorded():
    sc = _tiny(steps=2, batch_size=16, eval_samples=32)
    sc = replace(sc, model=replace(sc.model, max_rows=100))
    capped, data = prepare(sc, streaming=True)
    assert capped.model.table_sizes == (50, 100, 100)
    assert data.info["row_cap"]["tables_capped"] == 2 and data.info["row_cap"]["rows_after"] == 250
    src = training_source(data, 16)
    for f, n in enumerate(capped.model.table_sizes):
        assert int(src.batch(5).feature_ids(f).max()) < n and int(data.eval.feature_ids(f).max()) < n


def test_hash_into_takes_each_feature_modulo_its_table(stream):
    b = stream.batch(0)
    h = hash_into(b, (7, 11, 13))
    for f, n in enumerate((7, 11, 13)):
        np.testing.assert_array_equal(h.feature_ids(f), b.feature_ids(f) % n)


def test_production_presets_have_the_published_shapes():
    kaggle = build_scenario(PRESETS["criteo-kaggle"])
    assert sum(kaggle.model.table_sizes) == 33_762_577 and kaggle.model.embedding_dim == 16
    assert kaggle.model.bottom_mlp == (512, 256, 64, 16) and kaggle.model.top_mlp == (512, 256, 1)
    tb = build_scenario(PRESETS["criteo-terabyte"])
    assert max(tb.model.table_sizes) <= 40_000_000 and tb.model.top_mlp == (1024, 1024, 512, 256, 1)
    v2 = build_scenario(PRESETS["dlrm-v2"])
    assert sum(v2.model.ids_per_table()) == 214 and v2.data.bag_distribution == "fixed"
    assert len(v2.data.exponents(v2.model.num_tables)) == 26


def test_streamed_estimate_does_not_grow_with_steps():
    kaggle = build_scenario(PRESETS["criteo-kaggle"])
    short, long = (preflight.estimate_memory(replace(kaggle, train=replace(kaggle.train, steps=s)))
                   for s in (200, 20000))
    assert short["components"]["staged_batches"] == long["components"]["staged_batches"]
    assert short["bytes"] == long["bytes"] and long["streamed_input"] is True
    assert long["components"]["tables"] == 33_762_577 * 16 * 4
    capped = replace(kaggle, model=replace(kaggle.model, max_rows=1000))
    assert preflight.estimate_memory(capped)["table_bytes"] < 26 * 1000 * 16 * 4 + 1


def test_refusal_is_one_line_naming_the_estimate_and_the_limit():
    kaggle = build_scenario(PRESETS["criteo-kaggle"])
    with pytest.raises(UsageError) as exc:
        preflight.check_memory(kaggle, available={"bytes": 1 << 30, "source": "test limit"})
    msg = str(exc.value)
    assert "\n" not in msg and "exceeds the 1.0 GiB available (test limit)" in msg and "--max-rows" in msg
    gpu = replace(kaggle, device=replace(kaggle.device, device="cuda"))
    with pytest.raises(UsageError, match="device memory on cuda"):
        preflight.check_memory(gpu, available={"bytes": 1 << 50, "source": "t"},
                               device_available={"bytes": 1 << 20, "source": "test GPU"})


def test_cli_refuses_the_full_terabyte_tables_before_allocating(capsys):
    from recsys_impls.cli import main

    assert main(["run", "--preset", "criteo-terabyte", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "estimated peak memory" in err


def test_large_tables_keep_no_per_row_state_and_still_follow_zipf():
    from recsys_impls.data.synthetic import LARGE_TABLE_ROWS, _HashedTable

    assert preflight.SYNTH_LARGE_TABLE_ROWS == LARGE_TABLE_ROWS

    t = _HashedTable.build(np.random.default_rng(1), 1000, 1.1, want_vectors=True)
    ranks0 = np.arange(1000)
    assert np.unique((ranks0 * t.a + t.b) % t.n).size == 1000  # the rank -> id map is a bijection
    ids = t.draw(np.random.default_rng(2).random(200_000))
    assert ids.min() >= 0 and ids.max() < 1000
    counts = np.bincount(ids, minlength=1000)
    hottest = (0 * t.a + t.b) % t.n
    assert counts.argmax() == hottest and counts[hottest] > 10 * np.median(counts)
    w = t.weight_of(ids[:50])
    np.testing.assert_array_equal(w, t.weight_of(ids[:50]))  # a pure function of the id
    assert t.vectors_of(ids[:50]).shape == (50, 4) and np.isfinite(w).all()


def test_a_real_end_to_end_run_records_its_input_section(monkeypatch):
    from recsys_impls.measure import peaks
    from recsys_impls.runner import run_scenario

    monkeypatch.setattr(peaks, "machine_peaks", lambda *a, **k: {  # no peak measurement in a unit test
        "gemm_fp32_flops_per_s": 1e11, "gemm_bf16_flops_per_s": 1e11, "mem_triad_bytes_per_s": 1e10})

    sc = _tiny(steps=6, batch_size=64, eval_samples=256, latency_batches=2, warmup_steps=1, input_mode="end-to-end")
    record = run_scenario(sc)
    inp = record["input"]
    assert inp["mode"] == "end-to-end" and inp["max_batches_ahead"] <= inp["queue_depth"] + 1
    assert 0 <= inp["wait_fraction"] <= 1 and inp["producer"]["samples_per_s"] > 0
    assert inp["verdict"] in ("input-bound", "compute-bound", "memory-bound")
    assert record["throughput"]["input_conversion_in_timed_window"] is True
    assert record["train"]["timed_steps"] == 5 and record["data"]["train_samples"] == 6 * 64


def test_tensorflow_at_full_criteo_kaggle_size_is_not_refused_and_streams_its_tables():
    tf_kaggle = replace(build_scenario(PRESETS["criteo-kaggle"]), framework="tf")
    est = preflight.estimate_memory(tf_kaggle)
    assert est["components"]["initial_values"] < est["table_bytes"] / 10  # chunks, not a full copy
    compressed = replace(tf_kaggle, compression="int8")
    assert preflight.estimate_memory(compressed)["components"]["initial_values"] > est["table_bytes"]


def test_the_preflight_chunk_matches_the_initialisation_chunk():
    from recsys_impls.models.ranking import TABLE_CHUNK_VALUES

    assert preflight.INIT_CHUNK_VALUES == TABLE_CHUNK_VALUES


