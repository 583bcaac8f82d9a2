"""TFDLRM against the contract: names/shapes, the numpy oracle, hand-computed optimizer steps."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from recsys_impls.config import DeviceConfig, ModelConfig, Scenario, TrainConfig  # noqa: E402
from recsys_impls.data.batch import Batch  # noqa: E402
from recsys_impls.errors import ScenarioUnsupported, UsageError  # noqa: E402
from recsys_impls.init_params import initial_params, param_shapes, reference_forward  # noqa: E402
from recsys_impls.tf_impl.embeddings import make_embeddings  # noqa: E402
from recsys_impls.tf_impl.model import TFDLRM  # noqa: E402

CFG = ModelConfig(num_dense=4, table_sizes=(10, 7, 30), embedding_dim=8, bottom_mlp=(16, 8), top_mlp=(12, 1))
LAYOUTS = ("concat", "per-table")


def random_batch(cfg: ModelConfig, b: int, seed: int, max_ids: int = 3) -> Batch:
    """Multi-hot batch with empty bags and (small tables) duplicate ids."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_ids + 1, size=(cfg.num_tables, b)).astype(np.int32)
    lengths[:, 0] = 0  # sample 0 has only empty bags
    lengths[-1, -1] = 0  # and the very last bag is empty (a trailing empty segment)
    ids = np.concatenate([rng.integers(0, n, size=int(lengths[f].sum())) for f, n in enumerate(cfg.table_sizes)])
    return Batch(dense=rng.normal(size=(b, cfg.num_dense)).astype(np.float32), ids=ids.astype(np.int64),
                 lengths=lengths, labels=rng.integers(0, 2, size=b).astype(np.float32))


def scenario(optimizer: str = "sgd", lr: float = 0.1, **device: object) -> Scenario:
    return Scenario(framework="tf", model=CFG, train=TrainConfig(optimizer=optimizer, learning_rate=lr),
                    device=DeviceConfig(**device))


# --- numpy float64 oracle for the loss gradient (independent of TensorFlow) --------------------------
def _mlp_forward(params: dict, prefix: str, x: np.ndarray, relu_last: bool) -> tuple[np.ndarray, list]:
    cache, k = [], 0
    n = sum(1 for name in params if name.startswith(prefix + ".") and name.endswith(".weight"))
    for k in range(n):
        a = x @ params[f"{prefix}.{k}.weight"].T + params[f"{prefix}.{k}.bias"]
        cache.append((x, a))
        x = np.maximum(a, 0.0) if (k < n - 1 or relu_last) else a
    return x, cache


def _mlp_backward(params: dict, prefix: str, cache: list, grad: np.ndarray, relu_last: bool, out: dict) -> np.ndarray:
    n = len(cache)
    for k in reversed(range(n)):
        x, a = cache[k]
        if k < n - 1 or relu_last:
            grad = grad * (a > 0)
        out[f"{prefix}.{k}.weight"] = grad.T @ x
        out[f"{prefix}.{k}.bias"] = grad.sum(axis=0)
        grad = grad @ params[f"{prefix}.{k}.weight"]
    return grad


def numpy_loss_and_grads(params: dict, cfg: ModelConfig, batch: Batch) -> tuple[float, dict]:
    p = {k: v.astype(np.float64) for k, v in params.items()}
    b, n = batch.batch_size, cfg.num_tables + 1
    x, bottom_cache = _mlp_forward(p, "bottom", batch.dense.astype(np.float64), relu_last=True)
    offsets = batch.feature_offsets()
    segs, pooled = [], []
    for f in range(cfg.num_tables):
        ids = batch.ids[offsets[f]:offsets[f + 1]]
        seg = np.repeat(np.arange(b), batch.lengths[f])
        e = np.zeros((b, cfg.embedding_dim))
        np.add.at(e, seg, p[f"emb.{f}"][ids])
        segs.append((ids, seg))
        pooled.append(e)
    t = np.stack([x, *pooled], axis=1)
    li, lj = np.tril_indices(n, -1)
    z = np.einsum("bid,bjd->bij", t, t)
    logit, top_cache = _mlp_forward(p, "top", np.concatenate([x, z[:, li, lj]], axis=1), relu_last=False)
    logit = logit[:, 0]
    y = batch.labels.astype(np.float64)
    loss = float(np.mean(np.logaddexp(0.0, logit) - y * logit))
    grads: dict = {}
    dlogit = (1.0 / (1.0 + np.exp(-logit)) - y)[:, None] / b
    dh = _mlp_backward(p, "top", top_cache, dlogit, relu_last=False, out=grads)
    dz = np.zeros((b, n, n))
    dz[:, li, lj] = dh[:, cfg.embedding_dim:]
    dt = np.einsum("bij,bjd->bid", dz + dz.transpose(0, 2, 1), t)
    _mlp_backward(p, "bottom", bottom_cache, dh[:, :cfg.embedding_dim] + dt[:, 0], relu_last=True, out=grads)
    for f, (ids, seg) in enumerate(segs):
        g = np.zeros_like(p[f"emb.{f}"])
        np.add.at(g, ids, dt[seg, f + 1])
        grads[f"emb.{f}"] = g
    return loss, grads


def test_numpy_oracle_gradient_matches_finite_differences() -> None:
    params = {k: v.astype(np.float64) for k, v in initial_params(CFG, 3).items()}
    batch = random_batch(CFG, 8, seed=4)
    _, grads = numpy_loss_and_grads(params, CFG, batch)
    rng = np.random.default_rng(0)
    for name in ("emb.2", "bottom.0.weight", "top.0.weight", "top.1.bias"):
        ids = batch.feature_ids(2) if name == "emb.2" else None
        for _ in range(3):
            idx = (int(rng.choice(ids)), int(rng.integers(CFG.embedding_dim))) if ids is not None else \
                tuple(int(rng.integers(s)) for s in params[name].shape)
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = params[name].copy(), params[name].copy()
            plus[name][idx] += 1e-6
            minus[name][idx] -= 1e-6
            numeric = (numpy_loss_and_grads(plus, CFG, batch)[0] - numpy_loss_and_grads(minus, CFG, batch)[0]) / 2e-6
            assert grads[name][idx] == pytest.approx(numeric, rel=1e-4, abs=1e-8)


# --- the contract -----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_param_names_shapes_and_initial_values(layout: str) -> None:
    model = TFDLRM(scenario(), embedding_layout=layout)
    params = model.get_params()
    assert {k: v.shape for k, v in params.items()} == param_shapes(CFG)
    init = initial_params(CFG, 0)
    for name, value in params.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, init[name], err_msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predictions_match_reference_forward(layout: str) -> None:
    model = TFDLRM(scenario(), embedding_layout=layout)
    for seed, max_ids in ((1, 1), (2, 3), (3, 0)):  # one-hot, multi-hot with empty bags, all bags empty
        batch = random_batch(CFG, 17, seed, max_ids=max_ids)
        expected = reference_forward(model.get_params(), CFG, batch)
        np.testing.assert_allclose(model.predict(batch), expected, rtol=0, atol=1e-5)


def _expected_after_steps(optimizer: str, lr: float, batches: list[Batch]) -> dict[str, np.ndarray]:
    params = {k: v.astype(np.float64) for k, v in initial_params(CFG, 0).items()}
    state = {k: np.zeros_like(v) for k, v in params.items()}
    for batch in batches:
        _, grads = numpy_loss_and_grads(params, CFG, batch)
        for k, g in grads.items():
            if optimizer == "sgd":
                params[k] = params[k] - lr * g
            else:  # dense form equals the sparse one: rows with zero gradient keep s and p
                state[k] = state[k] + g * g
                params[k] = params[k] - lr * g / (np.sqrt(state[k]) + 1e-10)
    return params


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_optimizer_steps_match_numpy(optimizer: str, layout: str) -> None:
    lr = 0.05
    model = TFDLRM(scenario(optimizer, lr), embedding_layout=layout)
    batches = [random_batch(CFG, 16, seed) for seed in (10, 11, 12)]
    before = model.get_params()
    model.train_step(model.stage(batches[0]))
    after_one = model.get_params()
    for name, value in _expected_after_steps(optimizer, lr, batches[:1]).items():
        np.testing.assert_allclose(after_one[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # Rows that no id touched are bit-for-bit unchanged (the update is sparse).
    for f in range(CFG.num_tables):
        untouched = np.setdiff1d(np.arange(CFG.table_sizes[f]), batches[0].feature_ids(f))
        np.testing.assert_array_equal(after_one[f"emb.{f}"][untouched], before[f"emb.{f}"][untouched])
    for batch in batches[1:]:
        model.train_step(model.stage(batch))
    after_three = model.get_params()
    for name, value in _expected_after_steps(optimizer, lr, batches).items():
        np.testing.assert_allclose(after_three[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_loss_decreases(optimizer: str) -> None:
    model = TFDLRM(scenario(optimizer, 0.05))
    staged = model.stage(random_batch(CFG, 64, seed=5))
    first = model.loss(staged)
    for _ in range(30):
        model.train_step(staged)
    assert model.loss(staged) < 0.8 * first


def test_param_round_trip_and_optimizer_reset() -> None:
    model = TFDLRM(scenario("adagrad", 0.05))
    other = {k: v + np.float32(0.01) for k, v in initial_params(CFG, 7).items()}
    model.set_params(other)
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, other[name], err_msg=name)
    batch = random_batch(CFG, 16, seed=8)
    np.testing.assert_allclose(model.predict(batch), reference_forward(other, CFG, batch), atol=1e-5)
    # After training, loading the initial parameters again must also clear Adagrad's accumulators.
    staged = model.stage(batch)
    model.train_step(staged)
    model.set_params(initial_params(CFG, 0))
    model.train_step(staged)
    fresh = TFDLRM(scenario("adagrad", 0.05))
    fresh.train_step(fresh.stage(batch))
    for name, value in fresh.get_params().items():
        np.testing.assert_allclose(model.get_params()[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    with pytest.raises(UsageError, match="missing"):
        model.set_params({"emb.0": other["emb.0"]})
    with pytest.raises(UsageError, match="emb.1 has shape"):
        model.set_params({**other, "emb.1": other["emb.1"][:3]})


def test_no_retracing_across_batch_shapes() -> None:
    model = TFDLRM(scenario())
    for seed, b in ((1, 16), (2, 9), (3, 33)):
        staged = model.stage(random_batch(CFG, b, seed))
        model.train_step(staged)
        assert model.infer(staged).shape == (b,)
    facts = model.describe()
    assert facts["train_traces"] == 1 and facts["predict_traces"] == 1


def test_storage_bytes_are_serialized_sizes() -> None:
    model = TFDLRM(scenario())
    size = model.storage_bytes()
    raw_emb = sum(n * CFG.embedding_dim * 4 for n in CFG.table_sizes)
    raw_all = sum(int(np.prod(s)) * 4 for s in param_shapes(CFG).values())
    assert raw_emb <= size["embedding"] < raw_emb + 1024
    assert raw_all <= size["model"] < raw_all + 4096


def test_unknown_compression_is_unsupported() -> None:
    with pytest.raises(ScenarioUnsupported, match="compression 'tt:4'"):
        make_embeddings(CFG, initial_params(CFG, 0), "tt:4")
    with pytest.raises(ScenarioUnsupported, match="layout"):
        make_embeddings(CFG, initial_params(CFG, 0), "none", layout="rows")


# --- device settings: the paths a CPU can check -----------------------------------------------------
@pytest.mark.parametrize(("device", "match"), [
    ({"device": "GPU:7"}, "GPU:7"),
    ({"device": "cuda:0"}, "GPU:N"),
    ({"compile": "torch-compile"}, "PyTorch"),
    ({"precision": "tf32"}, "tf32"),
    ({"pinned_memory": True}, "pinned"),
])
def test_unsupported_device_settings(device: dict, match: str) -> None:
    if device.get("device") == "GPU:7" and len(tf.config.list_physical_devices("GPU")) > 7:
        pytest.skip("this machine has 8 GPUs")
    if device.get("precision") == "tf32" and tf.config.list_physical_devices("GPU"):
        pytest.skip("tf32 is supported where a GPU is visible")
    with pytest.raises(ScenarioUnsupported, match=match):
        TFDLRM(scenario(**device))


def test_threads_conflict_after_initialisation_is_reported() -> None:
    _ = tf.constant(1.0) + 1.0  # make sure the runtime has started
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(ScenarioUnsupported, match="fresh process"):
        TFDLRM(scenario(threads=current + 3))


def test_threads_honoured_in_a_fresh_process() -> None:
    """Also: TensorFlow started through the package skips its eager Keras import (no Keras, scikit-learn or
    pandas loaded), and Keras still imports afterwards for code that wants it."""
    code = ("import sys; from recsys_impls.config import *; from recsys_impls.tf_impl.model import TFDLRM; "
            "m = TFDLRM(Scenario(framework='tf', model=ModelConfig(table_sizes=(5,), embedding_dim=4, "
            "bottom_mlp=(4,), top_mlp=(1,)), device=DeviceConfig(threads=1))); "
            "d = m.describe(); print(d['intra_op_threads'], d['inter_op_threads']); "
            "print(sorted(m for m in ('keras', 'sklearn', 'pandas') if m in sys.modules)); "
            "import tensorflow as tf; print(tf.keras.optimizers.SGD.__module__.split('.')[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-3].split() == ["1", "1"]
    assert lines[-2] == "[]" and lines[-1] == "keras"


def test_xla_matches_plain_graph() -> None:
    plain, xla = TFDLRM(scenario("adagrad", 0.05)), TFDLRM(scenario("adagrad", 0.05, compile="xla"))
    assert xla.describe()["xla"] is True
    batch = random_batch(CFG, 16, seed=9)
    np.testing.assert_allclose(xla.predict(batch), plain.predict(batch), atol=1e-5)
    for model in (plain, xla):
        model.train_step(model.stage(batch))
    for name, value in plain.get_params().items():
        np.testing.assert_allclose(xla.get_params()[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_bf16_mixed_precision_trains_with_fp32_parameters() -> None:
    model = TFDLRM(scenario("sgd", 0.05, precision="amp-bf16"))
    assert model.describe()["compute_dtype"] == "bfloat16"
    batch = random_batch(CFG, 64, seed=5)
    # bf16 keeps ~3 significant digits: close to, but not equal to, the fp32 oracle.
    np.testing.assert_allclose(model.predict(batch), reference_forward(model.get_params(), CFG, batch), atol=3e-2)
    staged = model.stage(batch)
    first = model.loss(staged)
    for _ in range(30):
        model.train_step(staged)
    assert model.loss(staged) < 0.8 * first
    assert all(v.dtype == np.float32 for v in model.get_params().values())


def test_fp16_loss_scaling_skips_non_finite_steps() -> None:
    model = TFDLRM(scenario("sgd", 0.05, precision="amp-fp16"))
    assert model.describe()["loss_scaling"] == "dynamic"
    scale = float(model.loss_scale.scale.numpy())
    batch = random_batch(CFG, 16, seed=6)
    before = model.get_params()
    bad = Batch(dense=np.full_like(batch.dense, 1e30), ids=batch.ids, lengths=batch.lengths, labels=batch.labels)
    model.train_step(model.stage(bad))  # 1e30 overflows fp16: the step is skipped, the scale halves
    assert float(model.loss_scale.scale.numpy()) == scale / 2
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    model.train_step(model.stage(batch))
    assert int(model.loss_scale.good_steps.numpy()) == 1
    moved = model.get_params()
    assert any(not np.array_equal(moved[k], before[k]) for k in before)
    expected = _expected_after_steps("sgd", 0.05, [batch])
    for name, value in expected.items():  # fp16 math: the update is right to about 1e-2 of its size
        step = np.abs(value - before[name]).max()
        np.testing.assert_allclose(moved[name], value, atol=2e-2 * step + 1e-6, err_msg=name)


def test_tf_size_report_equals_serialize_tensor_without_serializing() -> None:
    from recsys_impls.tf_impl.embeddings import serialized_nbytes, serialized_tensor_nbytes

    for shape, dtype in [((100, 16), tf.float32), ((3,), tf.float32), ((0, 4), tf.float32), ((), tf.float32),
                         ((7, 5), tf.int64), ((20000, 3), tf.int8)]:
        t = tf.zeros(shape, dtype)
        assert serialized_tensor_nbytes(shape, dtype) == len(tf.io.serialize_tensor(t).numpy()), shape
    v = [tf.Variable(tf.ones([5, 2])), tf.Variable(tf.ones([4], tf.int32))]
    assert serialized_nbytes(v) == sum(len(tf.io.serialize_tensor(x).numpy()) for x in v)


def test_tf_plain_tables_fill_in_place_from_chunks() -> None:
    from recsys_impls.models.ranking import table_chunks
    from recsys_impls.tf_impl.embeddings import ConcatTables, PerTableTables

    cfg = ModelConfig(num_dense=3, table_sizes=(50, 9, 20), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
    full = initial_params(cfg, 3)
    for cls in (ConcatTables, PerTableTables):
        streamed, whole = cls(cfg, {}), cls(cfg, full)
        for f, start, chunk in table_chunks(cfg, 3, chunk_values=28):
            streamed.fill_rows(f, start, chunk)
        for f in range(3):
            np.testing.assert_array_equal(streamed.get_params()[f"emb.{f}"], full[f"emb.{f}"])
            np.testing.assert_array_equal(whole.get_params()[f"emb.{f}"], full[f"emb.{f}"])
