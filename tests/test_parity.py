"""Cross-framework parity: the same parameters give the same predictions in PyTorch
and TensorFlow, and the same SGD / Adagrad steps give the same parameters."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch_model = pytest.importorskip("recsys_impls.torch_impl.model")
tf_model = pytest.importorskip("recsys_impls.tf_impl.model")

from recsys_impls.config import ModelConfig, Scenario, TrainConfig  # noqa: E402
from recsys_impls.data.batch import Batch  # noqa: E402
from recsys_impls.init_params import initial_params, reference_forward  # noqa: E402

# Small tables so that a batch repeats ids within and across samples; multi-hot with empty bags.
CFG = ModelConfig(num_dense=5, table_sizes=(6, 40, 3, 25), embedding_dim=8, bottom_mlp=(16, 8), top_mlp=(16, 8, 1))


def make_batch(b: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 5, size=(CFG.num_tables, b)).astype(np.int32)
    lengths[:, 1] = 0
    ids = np.concatenate([rng.integers(0, n, size=int(lengths[f].sum())) for f, n in enumerate(CFG.table_sizes)])
    return Batch(dense=rng.lognormal(size=(b, CFG.num_dense)).astype(np.float32), ids=ids.astype(np.int64),
                 lengths=lengths, labels=rng.integers(0, 2, size=b).astype(np.float32))


def pair(optimizer: str, lr: float) -> tuple:
    train = TrainConfig(optimizer=optimizer, learning_rate=lr, seed=3)
    torch_impl = torch_model.TorchDLRM(Scenario(framework="torch", model=CFG, train=train))
    tf_impl = tf_model.TFDLRM(Scenario(framework="tf", model=CFG, train=train))
    # A common start that is not either framework's own initialisation.
    rng = np.random.default_rng(11)
    start = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in initial_params(CFG, 5).items()}
    torch_impl.set_params(start)
    tf_impl.set_params(start)
    return torch_impl, tf_impl, start


def assert_params_close(a: dict, b: dict, start: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        scale = max(np.abs(a[name] - start[name]).max(), 1e-3)  # the size of the update itself
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5 * scale + 1e-7, err_msg=name)


def test_duplicate_ids_are_present() -> None:
    batch = make_batch(32, 0)
    assert any(len(np.unique(batch.feature_ids(f))) < len(batch.feature_ids(f)) for f in range(CFG.num_tables))
    assert (batch.lengths == 0).any() and (batch.lengths > 1).any()


def test_same_params_same_predictions() -> None:
    torch_impl, tf_impl, start = pair("sgd", 0.1)
    for seed in (0, 1):
        batch = make_batch(32, seed)
        p_torch, p_tf = torch_impl.predict(batch), tf_impl.predict(batch)
        assert np.abs(p_torch - p_tf).max() <= 1e-4
        assert np.abs(p_tf - reference_forward(start, CFG, batch)).max() <= 1e-5
        assert torch_impl.loss(torch_impl.stage(batch)) == pytest.approx(tf_impl.loss(tf_impl.stage(batch)), abs=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_same_steps_same_params(optimizer: str) -> None:
    torch_impl, tf_impl, start = pair(optimizer, 0.05)
    batches = [make_batch(32, seed) for seed in (2, 3, 4, 5)]
    for i, batch in enumerate(batches):
        torch_impl.train_step(torch_impl.stage(batch))
        tf_impl.train_step(tf_impl.stage(batch))
        after_torch, after_tf = torch_impl.get_params(), tf_impl.get_params()
        assert any(not np.array_equal(after_tf[k], start[k]) for k in start), "no parameter moved"
        assert_params_close(after_torch, after_tf, start)
        if i == 0:  # rows no id touched stay exactly as they were in both
            for f in range(CFG.num_tables):
                untouched = np.setdiff1d(np.arange(CFG.table_sizes[f]), batch.feature_ids(f))
                for after in (after_torch, after_tf):
                    np.testing.assert_array_equal(after[f"emb.{f}"][untouched], start[f"emb.{f}"][untouched])
    probe = make_batch(32, 9)
    assert np.abs(torch_impl.predict(probe) - tf_impl.predict(probe)).max() <= 1e-4
