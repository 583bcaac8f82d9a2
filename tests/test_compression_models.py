"""Compressed DLRMs in both frameworks: oracle and cross-framework parity, stored bytes, pruning."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from recsys_impls.compression import model_state as ms
from recsys_impls.config import ModelConfig, Scenario, TrainConfig
from recsys_impls.data.batch import Batch

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*quantiz.*")

CFG = ModelConfig(num_dense=3, table_sizes=(100, 50, 7), embedding_dim=8, bottom_mlp=(16, 8), top_mlp=(8, 1))
SPECS = ["int8", "int4", "fp16", "bf16", "hash:0.2", "qr:4", "qr:3:concat,int8",
         "mixed-dim:0.5,int4", "freq-prune:2", "prune:0.5", "mlp-int8", "hash:0.3,int8,prune:0.8"]


def _batch(seed: int = 0, b: int = 64) -> Batch:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 3, size=(CFG.num_tables, b)).astype(np.int32)  # multi-hot and empty bags
    ids = np.concatenate([rng.integers(0, n, size=lengths[f].sum()) for f, n in enumerate(CFG.table_sizes)])
    return Batch(dense=rng.normal(size=(b, CFG.num_dense)).astype(np.float32), ids=ids.astype(np.int64),
                 lengths=lengths, labels=(rng.random(b) < 0.3).astype(np.float32))


def _scenario(spec: str, framework: str, steps: int = 4) -> Scenario:
    return Scenario(framework=framework, model=CFG, train=TrainConfig(steps=steps, batch_size=64),
                    compression=spec).validate()


def _torch(spec: str):  # noqa: ANN202
    pytest.importorskip("torch")
    from recsys_impls.torch_impl.compress_model import CompressedTorchDLRM

    return CompressedTorchDLRM(_scenario(spec, "torch"))


def _tf(spec: str):  # noqa: ANN202
    pytest.importorskip("tensorflow")
    from recsys_impls.tf_impl.compress_model import CompressedTFDLRM

    return CompressedTFDLRM(_scenario(spec, "tf"))


@pytest.mark.parametrize("spec", SPECS)
def test_trained_tf_and_torch_agree_and_match_oracle(spec: str) -> None:
    """Train TF a few steps, load its weights (and id counts) into torch: same stored bytes, same
    predictions, and both equal the numpy oracle of the stored model (mlp-int8: activation
    quantization is not in the weight-only oracle, so only framework parity is tight there)."""
    batch = _batch()
    tf_model, torch_model = _tf(spec), _torch(spec)
    staged = tf_model.stage(batch)
    for _ in range(4):
        tf_model.train_step(staged)
    torch_model.set_params(tf_model.get_params())
    torch_model.set_id_counts(tf_model.id_counts())
    p_tf, p_torch = tf_model.predict(batch), torch_model.predict(batch)
    stored_tf, stored_torch = tf_model.stored_arrays(), torch_model.stored_arrays()
    assert sorted(stored_tf) == sorted(stored_torch)
    for k in stored_tf:
        np.testing.assert_array_equal(stored_tf[k], stored_torch[k], err_msg=k)
    np.testing.assert_allclose(p_torch, p_tf, atol=1e-5)
    ref = ms.reference_forward(CFG, tf_model.plan, stored_tf, batch)
    np.testing.assert_allclose(p_tf, ref, atol=2e-2 if "mlp-int8" in spec else 1e-5)


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("spec", ["int8", "qr:4", "prune:0.8", "freq-prune:2,int4"])
def test_stored_bytes_equal_serialized_file(tmp_path, framework: str, spec: str) -> None:  # noqa: ANN001
    model = _torch(spec) if framework == "torch" else _tf(spec)
    batch = _batch(1)
    staged = model.stage(batch)
    for _ in range(4):
        model.train_step(staged)
    path = tmp_path / "model.npz"
    path.write_bytes(ms.serialize(model.stored_arrays()))
    assert model.storage_bytes()["model"] == path.stat().st_size
    # What was written is the whole model: a fresh model loaded from the file predicts the same.
    fresh = _torch(spec) if framework == "torch" else _tf(spec)
    fresh.load_stored(ms.deserialize(path.read_bytes()))
    np.testing.assert_allclose(fresh.predict(batch), model.predict(batch), atol=1e-6)


def test_int8_tables_shrink_like_rowwise_format() -> None:
    model = _torch("int8")
    stored = model.stored_arrays()
    for f, n in enumerate(CFG.table_sizes):
        assert stored[f"emb.{f}@int8"].shape == (n, CFG.embedding_dim + 8)
        assert stored[f"emb.{f}@int8"].dtype == np.uint8


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_pruning_reaches_exact_sparsity_and_stays_pruned(framework: str) -> None:
    spec = "prune:0.8"
    model = _torch(spec) if framework == "torch" else _tf(spec)
    staged = model.stage(_batch(2))
    for _ in range(4):  # steps=4: masks applied at step 3, step 4 is the masked fine-tune
        model.train_step(staged)
    params = model.get_params()
    for name, w in params.items():
        if name.endswith(".weight") and not name.startswith("emb."):
            assert int((w == 0).sum()) == round(0.8 * w.size), name
    stored = model.stored_arrays()
    dense_bytes = sum(v.nbytes for k, v in params.items() if k.endswith(".weight") and not k.startswith("emb."))
    sparse_bytes = sum(v.nbytes for k, v in stored.items() if "weight." in k)
    assert sparse_bytes < 0.5 * dense_bytes


def test_qr_gives_distinct_vectors_to_distinct_ids() -> None:
    model = _torch("qr:4")
    stored = model.stored_arrays()
    for f, n in enumerate(CFG.table_sizes):
        vecs = ms.embedding_rows(CFG, model.plan, stored, f, np.arange(n))
        assert len({tuple(np.round(v, 12)) for v in vecs}) == n


def test_hashed_model_uses_fewer_rows_and_maps_in_range() -> None:
    model = _torch("hash:0.2")
    params = model.get_params()
    assert params["emb.0"].shape == (20, CFG.embedding_dim)
    batch = _batch(3)
    staged = model.stage(batch)
    rows = model.net.embeddings.global_rows(staged.sparse).numpy()
    assert rows.min() >= 0 and rows.max() < 20 + 10 + 2


def test_registry_builds_compressed_and_rejects_conflicts() -> None:
    pytest.importorskip("torch")
    from recsys_impls import registry
    from recsys_impls.errors import UsageError

    impl = registry.build(_scenario("int4", "torch"))
    assert type(impl).__name__ == "CompressedTorchDLRM"
    with pytest.raises(UsageError, match="conflict"):
        Scenario(compression="int8,int4").validate()


@pytest.mark.parametrize("spec, optimizer", [("qr:4", "adagrad"), ("hash:0.2", "sgd"), ("mixed-dim:0.5", "adagrad")])
def test_training_time_layouts_train_identically(spec: str, optimizer: str) -> None:
    """Same start, same batches: hashed / QR / mixed-dim tables get the same updates in both frameworks."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from recsys_impls.tf_impl.compress_model import CompressedTFDLRM
    from recsys_impls.torch_impl.compress_model import CompressedTorchDLRM

    sc = Scenario(model=CFG, train=TrainConfig(steps=3, batch_size=64, optimizer=optimizer, learning_rate=0.05),
                  compression=spec)
    torch_model, tf_model = CompressedTorchDLRM(sc), CompressedTFDLRM(sc)
    torch_model.set_params(tf_model.get_params())
    batches = [_batch(s) for s in range(3)]
    for b in batches:
        torch_model.train_step(torch_model.stage(b))
        tf_model.train_step(tf_model.stage(b))
    pt, pf = torch_model.get_params(), tf_model.get_params()
    for k in pf:
        np.testing.assert_allclose(pt[k], pf[k], rtol=1e-5, atol=1e-6, err_msg=k)
    init = ms.initial_params(CFG, tf_model.plan, 0)
    assert any(not np.allclose(pf[k], v) for k, v in init.items())  # the weights really moved
