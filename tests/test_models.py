"""The model zoo: registry, numpy references, and PyTorch/TensorFlow parity for every ranking model.

Tiny shapes: every model's parity runs in well under a second per framework.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from recsys_impls.cli import main
from recsys_impls.config import ModelConfig, Scenario, TrainConfig, build_scenario
from recsys_impls.data.batch import Batch
from recsys_impls.errors import UsageError
from recsys_impls.models import model_names, model_spec, models

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASE = ModelConfig(num_dense=5, table_sizes=(6, 40, 3), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1),
                   cross_layers=2, cross_rank=3)
RANKING = [m.name for m in models("ranking")]


def cfg(name: str) -> ModelConfig:
    return replace(BASE, arch=name)


def make_batch(config: ModelConfig, b: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 4, size=(config.num_tables, b)).astype(np.int32)
    lengths[:, 1] = 0  # an empty bag in every feature
    ids = np.concatenate([rng.integers(0, n, size=int(lengths[f].sum())) for f, n in enumerate(config.table_sizes)])
    return Batch(dense=rng.lognormal(size=(b, config.num_dense)).astype(np.float32), ids=ids.astype(np.int64),
                 lengths=lengths, labels=rng.integers(0, 2, size=b).astype(np.float32))


# ---- registry (no framework) -------------------------------------------------------------------

def test_registry_lists_ranking_models_with_builders_for_both_backends() -> None:
    assert {"dlrm", "dlrm-cat", "dcnv2"} <= set(model_names())
    for name in RANKING:
        spec = model_spec(name)
        assert set(spec.builders) == {"torch", "tf"}
        assert "auc" in spec.quality_metrics


@pytest.mark.parametrize("name", ["dlrm", "dlrm-cat", "dcnv2"])
def test_initial_params_follow_the_spec_shapes_and_seed(name: str) -> None:
    spec, c = model_spec(name), cfg(name)
    p = spec.initial_params(c, 1)
    assert {k: v.shape for k, v in p.items()} == spec.param_shapes(c)
    assert all(v.dtype == np.float32 for v in p.values())
    assert np.array_equal(p["top.0.weight"], spec.initial_params(c, 1)["top.0.weight"])
    assert not np.array_equal(p["top.0.weight"], spec.initial_params(c, 2)["top.0.weight"])
    assert p["top.0.weight"].shape[1] == c.interaction_dim


def test_dcnv2_reference_is_the_cross_formula() -> None:
    c = cfg("dcnv2")
    p = model_spec("dcnv2").initial_params(c, 0)
    batch = make_batch(c, 5, 0)
    got = model_spec("dcnv2").reference_forward(p, c, batch)
    # The same maths written out once more, layer by layer.
    x = batch.dense.astype(np.float64)
    for k in range(2):
        x = np.maximum(x @ p[f"bottom.{k}.weight"].T + p[f"bottom.{k}.bias"], 0)
    offsets = batch.feature_offsets()
    pooled = []
    for f in range(c.num_tables):
        ids, seg = batch.ids[offsets[f]:offsets[f + 1]], np.repeat(np.arange(5), batch.lengths[f])
        acc = np.zeros((5, c.embedding_dim))
        np.add.at(acc, seg, p[f"emb.{f}"][ids])
        pooled.append(acc)
    x0 = xl = np.concatenate([x, *pooled], axis=1)
    for k in range(2):
        xl = x0 * ((p[f"cross.{k}.u.weight"] @ (p[f"cross.{k}.v.weight"] @ xl.T)).T + p[f"cross.{k}.u.bias"]) + xl
    h = np.maximum(xl @ p["top.0.weight"].T + p["top.0.bias"], 0) @ p["top.1.weight"].T + p["top.1.bias"]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-h[:, 0])), atol=1e-6)


def test_model_config_is_validated_per_architecture() -> None:
    with pytest.raises(UsageError, match="--model nope: accepted: dlrm, dlrm-cat, dcnv2"):
        build_scenario({"model": {"arch": "nope"}})
    with pytest.raises(UsageError, match="cross_rank = 0"):
        build_scenario({"model": {"arch": "dcnv2", "cross_rank": 0}})
    with pytest.raises(UsageError, match="bottom_mlp ends in 8 but embedding_dim is 4"):
        replace(BASE, bottom_mlp=(8,)).validate()
    replace(BASE, arch="dlrm-cat", bottom_mlp=(8,)).validate()  # concatenation needs no equal widths
    # A model's own training defaults apply unless the scenario sets the field.
    assert build_scenario({"model": {"arch": "dcnv2"}}).train.learning_rate == 0.005
    assert build_scenario({"model": {"arch": "dcnv2"}, "train": {"learning_rate": 0.05}}).train.learning_rate == 0.05
    assert build_scenario({"model": {"arch": "dlrm-cat"}}).train.learning_rate == 0.05


def test_cli_model_flag_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--model", "nope", "--steps", "1"]) == 2
    assert "--model nope: accepted: dlrm, dlrm-cat, dcnv2" in capsys.readouterr().err
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "models (--model)" in out
    for name in RANKING:
        assert f"  {name} " in out
    assert "quality: auc, logloss, ne" in out and "axes: all" in out


# ---- both frameworks -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frameworks() -> tuple:
    torch_model = pytest.importorskip("recsys_impls.torch_impl.model")
    tf_model = pytest.importorskip("recsys_impls.tf_impl.model")
    return torch_model.TorchDLRM, tf_model.TFDLRM


def _pair(frameworks: tuple, name: str, compression: str = "none") -> tuple:
    from recsys_impls import registry

    c = cfg(name)
    train = TrainConfig(optimizer="adagrad", learning_rate=0.05, seed=3)
    impls = [registry.build(Scenario(framework=fw, model=c, train=train, compression=compression))
             for fw in ("torch", "tf")]
    return c, impls


def _close(a: dict, b: dict, start: dict) -> None:
    assert a.keys() == b.keys() == start.keys()
    for k in a:
        scale = max(np.abs(a[k] - start[k]).max(), 1e-3)  # the size of the update itself
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5 * scale + 1e-7, err_msg=k)


@pytest.mark.parametrize(("name", "compression"), [("dlrm-cat", "none"), ("dcnv2", "none"), ("dlrm", "tt:3")])
def test_parity_predictions_and_steps(frameworks: tuple, name: str, compression: str) -> None:
    from recsys_impls.compression import model_state as ms
    from recsys_impls.compression.spec import parse_compression

    c, (pt, tf) = _pair(frameworks, name, compression)
    plan = parse_compression(compression)
    rng = np.random.default_rng(11)
    start = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)
             for k, v in ms.initial_params(c, plan, 5).items()}
    for impl in (pt, tf):
        impl.set_params(start)
    batch = make_batch(c, 16, 0)
    want = ms.reference_forward(c, plan, ms.finalize(c, plan, start), batch)
    assert np.abs(pt.predict(batch) - want).max() <= 1e-5
    assert np.abs(tf.predict(batch) - want).max() <= 1e-5
    for i, seed in enumerate((1, 2, 3, 4)):
        b = make_batch(c, 16, seed)
        pt.train_step(pt.stage(b))
        tf.train_step(tf.stage(b))
        if i in (0, 3):  # after 1 and after 4 steps
            after = pt.get_params()
            assert any(not np.array_equal(after[k], start[k]) for k in start if k.startswith("emb."))
            assert any(not np.array_equal(after[k], start[k]) for k in start if not k.startswith("emb."))
            _close(after, tf.get_params(), start)
    assert np.abs(pt.predict(batch) - tf.predict(batch)).max() <= 1e-4


@pytest.mark.parametrize(("name", "compression"), [("dcnv2", "qr:2,int8"), ("dlrm-cat", "hash:0.5,mlp-int8"),
                                                   ("dcnv2", "prune:0.5"), ("dcnv2", "tt:2,int4")])
def test_compression_applies_to_every_ranking_model(frameworks: tuple, name: str, compression: str) -> None:
    from recsys_impls.compression import model_state as ms

    c, (pt, tf) = _pair(frameworks, name, compression)
    tf.set_params(pt.get_params())
    batch = make_batch(c, 16, 0)
    stored_pt, stored_tf = pt.finalize(), tf.finalize()
    assert stored_pt.keys() == stored_tf.keys()
    want = ms.reference_forward(c, pt.plan, stored_pt, batch)
    # mlp-int8 quantizes activations too (the reference is weight-only int8): a looser bound there.
    atol = 3e-2 if "mlp-int8" in compression else 1e-5
    np.testing.assert_allclose(pt.predict(batch), want, atol=atol)
    np.testing.assert_allclose(tf.predict(batch), want, atol=atol)


def test_dcnv2_learns_an_xor_cross_that_concatenation_cannot(frameworks: tuple) -> None:
    """Label = XOR of two binary categorical features. A linear logit over concatenated embeddings is
    additive, f(a) + g(b): of the four positive/negative pairs, (0,1) and (1,0) against (0,0) and (1,1),
    f(0)+g(1) + f(1)+g(0) = f(0)+g(0) + f(1)+g(1) lets at most two be ordered right, so its AUC is at
    most 0.5. One cross layer adds the products e_a * e_b, which can separate them."""
    from recsys_impls.metrics import auc

    torch_cls, _ = frameworks
    a, b = (g.ravel() for g in np.meshgrid(np.arange(2), np.arange(2)))  # every pair equally often
    a, b = np.tile(a, 32), np.tile(b, 32)
    n = a.size
    batch = Batch(dense=np.zeros((n, 1), np.float32), ids=np.concatenate([a, b]).astype(np.int64),
                  lengths=np.ones((2, n), np.int32), labels=(a ^ b).astype(np.float32))
    shape = ModelConfig(num_dense=1, table_sizes=(2, 2), embedding_dim=4, bottom_mlp=(4,), top_mlp=(1,),
                        cross_layers=1, cross_rank=4)
    scores = {}
    for name in ("dcnv2", "dlrm-cat"):
        impl = torch_cls(Scenario(model=replace(shape, arch=name),
                                  train=TrainConfig(optimizer="adagrad", learning_rate=0.3, seed=1)))
        staged = impl.stage(batch)
        for _ in range(60):
            impl.train_step(staged)
        scores[name] = auc(batch.labels, impl.predict(batch))
    assert scores["dcnv2"] > 0.95, scores
    assert scores["dlrm-cat"] <= 0.5 + 1e-9, scores


def test_tt_cores_factor_the_table_and_compress_large_ones() -> None:
    from recsys_impls.compression import model_state as ms
    from recsys_impls.compression import tt
    from recsys_impls.compression.spec import parse_compression

    assert tt.dim_factors(16) == (2, 2, 4) and tt.dim_factors(128) == (4, 4, 8) and tt.dim_factors(7) == (1, 1, 7)
    for rows in (1, 3, 40, 100000):
        assert np.prod(tt.row_factors(rows)) >= rows
    # Every id reads a distinct (i1, i2, i3): the map is injective on [0, N).
    ids = np.arange(1000)
    assert len(set(zip(*tt.tt_indices(ids, 1000), strict=True))) == 1000
    big = replace(BASE, table_sizes=(100000,), embedding_dim=16)
    plan = parse_compression("tt:8")
    shapes = ms.embedding_shapes(big, plan)
    assert sum(int(np.prod(v)) for v in shapes.values()) * 100 < 100000 * 16
    init = ms.initial_params(big, plan, 0)
    rows = tt.tt_rows([init[f"emb.0.tt{k}"] for k in range(3)], ids, 100000, 16, 8)
    assert rows.shape == (1000, 16) and 0.3 < rows.std() * np.sqrt(3 * 100000) < 3  # about the plain init's scale
    with pytest.raises(UsageError, match="tt:RANK"):
        parse_compression("tt")
    with pytest.raises(UsageError, match="conflict"):
        parse_compression("tt:4,qr:2")
