"""Compression layouts as registered objects: a new one is written once and builds in both frameworks;
no layout allocates the plain fp32 table it would replace."""

from __future__ import annotations

import os
import tracemalloc
import warnings
from typing import Any

import numpy as np
import pytest

from recsys_impls.compression import layouts as lay
from recsys_impls.compression import model_state as ms
from recsys_impls.compression.spec import describe_methods, parse_compression
from recsys_impls.config import ModelConfig, Scenario, TrainConfig
from recsys_impls.data.batch import Batch
from recsys_impls.errors import UsageError
from recsys_impls.workmodel import work_per_step

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*quantiz.*")

CFG = ModelConfig(num_dense=3, table_sizes=(100, 50, 7), embedding_dim=8, bottom_mlp=(16, 8), top_mlp=(8, 1))
# One table large enough that drawing or allocating it plainly shows up (6.4 MB float32, 12.8 MB drawn).
BIG = ModelConfig(num_dense=3, table_sizes=(200_000, 50), embedding_dim=8, bottom_mlp=(16, 8), top_mlp=(8, 1))
COMPRESSED = ("hash:0.01", "qr:400", "tt:4")


class DoubleHash(lay.Layout):
    """Test-only layout: two hashed tables (different seeds) of K = ceil(FRACTION * rows) rows, summed."""

    name, usage = "double-hash", "double-hash:FRACTION"

    def parse(self, where: str, part: str, args: list[str]) -> dict[str, object]:
        if len(args) != 1 or not 0 < float(args[0]) <= 1:
            raise UsageError(f"{where}: '{part}' must be {self.usage}")
        return {}  # the fraction stays in plan.layout_args

    def groups(self, config: Any, plan: Any, f: int) -> list[lay.Group]:
        from recsys_impls.compression.hashing import num_buckets

        k = num_buckets(config.table_sizes[f], float(plan.layout_args[0]))
        # Seeds differ per table: the PyTorch stage cannot fuse the tables and looks each one up on its own.
        return [lay.Group("a", (k, config.embedding_dim), (("hash", 1 + f), ("mod", k))),
                lay.Group("b", (k, config.embedding_dim), (("hash", 101 + f), ("mod", k)))]

    def combine(self, config: Any, plan: Any, f: int) -> lay.Combine:
        return lay.Combine("add")


@pytest.fixture(scope="module")
def double_hash():  # noqa: ANN201
    lay.register_layout(DoubleHash())
    yield "double-hash:0.3"
    lay.unregister_layout("double-hash")


def _batch(seed: int = 0, b: int = 32) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 3, size=(CFG.num_tables, b)).astype(np.int32)
    ids = np.concatenate([rng.integers(0, n, size=lengths[f].sum()) for f, n in enumerate(CFG.table_sizes)])
    return Batch(dense=rng.normal(size=(b, CFG.num_dense)).astype(np.float32), ids=ids.astype(np.int64),
                 lengths=lengths, labels=(rng.random(b) < 0.3).astype(np.float32))


def _scenario(config: ModelConfig, spec: str, framework: str) -> Scenario:
    return Scenario(framework=framework, model=config, train=TrainConfig(steps=2, batch_size=32, learning_rate=0.1),
                    compression=spec).validate()


def test_registered_layout_parses_shapes_and_models_work(double_hash: str) -> None:
    plan = parse_compression(double_hash)
    assert plan.layout == "double-hash" and plan.layout_args == ("0.3",) and plan.methods == ("double-hash",)
    assert ms.embedding_shapes(CFG, plan) == {"emb.0.a": (30, 8), "emb.0.b": (30, 8), "emb.1.a": (15, 8),
                                              "emb.1.b": (15, 8), "emb.2.a": (3, 8), "emb.2.b": (3, 8)}
    with pytest.raises(UsageError, match="double-hash:FRACTION"):
        parse_compression("double-hash")
    with pytest.raises(UsageError, match="conflict"):
        parse_compression("double-hash:0.3,qr:2")
    # The work model reads two D-wide rows per id, like QR.
    w = work_per_step(CFG, 4, "infer", compression=double_hash)
    assert w.embedding_bytes_read == 2 * work_per_step(CFG, 4, "infer").embedding_bytes_read
    assert "double-hash" in {row["method"] for row in describe_methods()}  # `list` shows it
    with pytest.raises(UsageError, match="unknown embedding layout 'nope'"):
        lay.get_layout("nope")


def test_registered_layout_trains_in_both_frameworks_like_its_reference(double_hash: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from recsys_impls.tf_impl.compress_model import CompressedTFDLRM
    from recsys_impls.torch_impl.compress_model import CompressedTorchDLRM

    pt = CompressedTorchDLRM(_scenario(CFG, double_hash, "torch"))
    assert not pt.net.embeddings.fused
    tf = CompressedTFDLRM(_scenario(CFG, double_hash, "tf"))
    plan, start = pt.plan, ms.initial_params(CFG, pt.plan, 0)
    for impl in (pt, tf):
        impl.set_params(start)
    batch = _batch(1)
    want = ms.reference_forward(CFG, plan, ms.finalize(CFG, plan, start), batch)
    np.testing.assert_allclose(pt.predict(batch), want, atol=1e-5)  # (TF: checked after the step only)
    pt.train_step(pt.stage(batch))
    tf.train_step(tf.stage(batch))
    after_pt, after_tf = pt.get_params(), tf.get_params()
    assert after_pt.keys() == after_tf.keys() == start.keys()
    assert not np.allclose(after_pt["emb.0.b"], start["emb.0.b"])  # the second group trains too
    for k in start:
        np.testing.assert_allclose(after_pt[k], after_tf[k], rtol=1e-5, atol=1e-6, err_msg=k)
    want = ms.reference_forward(CFG, plan, ms.finalize(CFG, plan, after_pt), batch)
    np.testing.assert_allclose(pt.predict(batch), want, atol=1e-5)
    np.testing.assert_allclose(tf.predict(batch), want, atol=1e-5)


def _peak_bytes(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("spec", COMPRESSED)
def test_compressed_init_never_draws_the_plain_table(spec: str) -> None:
    plan = parse_compression(spec)
    plain = BIG.table_sizes[0] * BIG.embedding_dim * 4
    assert _peak_bytes(lambda: ms.initial_params(BIG, parse_compression("none"), 0)) > plain  # the check can fail
    assert _peak_bytes(lambda: ms.initial_params(BIG, plan, 0)) < plain / 10
    # The dense parameters are still the baseline's own draws.
    base, comp = ms.initial_params(CFG, parse_compression("none"), 3), ms.initial_params(CFG, plan, 3)
    for k, v in base.items():
        if not k.startswith("emb."):
            np.testing.assert_array_equal(comp[k], v)


def _refuse(*_: Any, **__: Any) -> None:
    raise AssertionError("a plain embedding stage was built for a compressed model")


def test_compressed_torch_model_builds_no_plain_table(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from recsys_impls.torch_impl import embeddings, model
    from recsys_impls.torch_impl.compress_model import CompressedTorchDLRM

    monkeypatch.setattr(embeddings.FusedEmbeddingBags, "__init__", _refuse)
    monkeypatch.setattr(model, "build_embeddings", _refuse)
    plain = BIG.table_sizes[0] * BIG.embedding_dim * 4
    for spec in COMPRESSED:
        impl = CompressedTorchDLRM(_scenario(BIG, spec, "torch"))
        tensors = [*impl.net.parameters(), *impl.net.buffers()]
        assert sum(t.numel() * t.element_size() for t in tensors) < plain / 10, spec


def test_compressed_tf_model_builds_no_plain_table(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    from recsys_impls.tf_impl import embeddings, model
    from recsys_impls.tf_impl.compress_model import CompressedTFDLRM

    monkeypatch.setattr(embeddings.ConcatTables, "__init__", _refuse)
    monkeypatch.setattr(embeddings.PerTableTables, "__init__", _refuse)
    monkeypatch.setattr(model, "make_embeddings", _refuse)
    plain = BIG.table_sizes[0] * BIG.embedding_dim * 4
    for spec in COMPRESSED:
        impl = CompressedTFDLRM(_scenario(BIG, spec, "tf"))
        emb = sum(int(np.prod(v.shape)) * 4 for v in impl.trainable_variables)
        assert emb < plain / 10, spec


@pytest.mark.parametrize("spec", ["tt:3", "tt:2,int4"])
def test_torch_tt_inference_once_per_distinct_id_equals_per_id(spec: str) -> None:
    pytest.importorskip("torch")
    import torch

    from recsys_impls.torch_impl.compress_embeddings import CompressedEmbeddings

    plan = parse_compression(spec)
    stored = ms.finalize(CFG, plan, ms.initial_params(CFG, plan, 0))
    emb = CompressedEmbeddings(CFG, plan, {}, stored=stored)
    assert emb.unique_ids
    batch = _batch(2, b=64)  # ids repeat across bags
    s = emb.stage(batch, torch.device("cpu"), False)
    with torch.no_grad():
        once = emb(s).numpy()
        emb.unique_ids = False
        per_id = emb(s).numpy()
    np.testing.assert_allclose(once, per_id, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", ["freq-prune:2,int8", "qr:4:concat", "tt:2", "hash:0.3,fp16", "mixed-dim:0.5"])
@pytest.mark.parametrize("fused", [True, False])
def test_torch_stage_matches_the_oracle_fused_or_per_table(monkeypatch: pytest.MonkeyPatch, spec: str,
                                                           fused: bool) -> None:
    """The generic stage, with tables fused (where the layout allows) or looked up one by one, reads the
    oracle's rows from the stored arrays."""
    pytest.importorskip("torch")
    import torch

    from recsys_impls.torch_impl import compress_embeddings as ce

    plan = parse_compression(spec)
    rng = np.random.default_rng(0)
    counts = {f: rng.integers(0, 4, n) for f, n in enumerate(CFG.table_sizes)}
    stored = ms.finalize(CFG, plan, ms.initial_params(CFG, plan, 0), counts)
    if not fused:
        monkeypatch.setattr(ce, "fusable", lambda config, plan: False)
    emb = ce.CompressedEmbeddings(CFG, plan, {}, stored=stored)
    assert emb.fused == (fused and spec != "mixed-dim:0.5")
    batch = _batch(4)
    with torch.no_grad():
        got = emb(emb.stage(batch, torch.device("cpu"), False)).numpy()
    offsets = batch.feature_offsets()
    for f in range(CFG.num_tables):
        rows = ms.embedding_rows(CFG, plan, stored, f, batch.ids[offsets[f] : offsets[f + 1]])
        want = np.zeros((batch.batch_size, CFG.embedding_dim))
        np.add.at(want, np.repeat(np.arange(batch.batch_size), batch.lengths[f]), rows)
        np.testing.assert_allclose(got[:, f], want, rtol=1e-5, atol=1e-6, err_msg=f"table {f}")
