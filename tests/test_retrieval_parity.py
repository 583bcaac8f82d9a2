"""Two-tower and NeuMF: PyTorch, TensorFlow and the numpy reference agree on outputs, losses, optimizer steps
and served top-k."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch_tt = pytest.importorskip("recsys_impls.torch_impl.two_tower")
tf_tt = pytest.importorskip("recsys_impls.tf_impl.two_tower")

from recsys_impls.data.interactions import entity_features  # noqa: E402
from recsys_impls.metrics_retrieval import top_k  # noqa: E402
from recsys_impls.models import neumf, two_tower  # noqa: E402
from recsys_impls.tf_impl.neumf import TFNeuMF  # noqa: E402
from recsys_impls.torch_impl.neumf import TorchNeuMF  # noqa: E402

rng0 = np.random.default_rng(5)
# users: own id + a multi-hot bag (0..3 ids, padded with -1); items: own id + a 1..2 genre bag
USERS = entity_features({"user": np.arange(12), "tags": np.where(rng0.random((12, 3)) < 0.5, rng0.integers(0, 4,
                                                                                                        (12, 3)), -1)},
                        {"user": 12, "tags": 4})
ITEMS = entity_features({"item": np.arange(9), "genre": np.stack([rng0.integers(0, 3, 9),
                                                                  np.where(rng0.random(9) < 0.5, 2, -1)], 1)},
                        {"item": 9, "genre": 3})
SHAPE_U = two_tower.TowerShape(USERS.rows, tuple(USERS.slot_feature.tolist()))
SHAPE_I = two_tower.TowerShape(ITEMS.rows, tuple(ITEMS.slot_feature.tolist()))
TT = two_tower.TwoTowerConfig(embedding_dim=4, tower_mlp=(8, 6), temperature=0.2)


def tt_batch(seed: int, b: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, 12, b), rng.integers(0, 9, b)  # 16 draws of 9 items: repeats in every batch
    log_q = np.log(rng.dirichlet(np.ones(9))).astype(np.float32)
    return {"user_ids": USERS.ids[u], "user_mask": USERS.mask[u], "item_ids": ITEMS.ids[i], "item_mask": ITEMS.mask[i],
            "items": i.astype(np.int64), "log_q": log_q[i]}


def start_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)  # a common start that is neither framework's own
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in params.items()}


def assert_params_close(a: dict, b: dict, start: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        scale = max(np.abs(a[name] - start[name]).max(), 1e-3)  # the size of the update itself
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5 * scale + 1e-7, err_msg=name)


@pytest.fixture(scope="module", params=["sgd", "adagrad"])
def towers(request):
    pair = [cls(TT, SHAPE_U, SHAPE_I, request.param, 0.1, seed=3)
            for cls in (torch_tt.TorchTwoTower, tf_tt.TFTwoTower)]
    start = start_params(two_tower.initial_params(TT, SHAPE_U, SHAPE_I, 3))
    return pair, start


def test_two_tower_outputs_and_loss_match_reference(towers) -> None:
    (pt, tf), start = towers
    pt.set_params(start)
    tf.set_params(start)
    b = tt_batch(0)
    assert len(set(b["items"].tolist())) < b["items"].size  # the same-item mask is exercised
    for side, ids, mask, shape in (("user", b["user_ids"], b["user_mask"], SHAPE_U),
                                   ("item", b["item_ids"], b["item_mask"], SHAPE_I)):
        ref = two_tower.reference_tower(start, TT, side, shape, ids, mask)
        np.testing.assert_allclose(pt.encode(side, ids, mask), ref, atol=1e-4)
        np.testing.assert_allclose(tf.encode(side, ids, mask), ref, atol=1e-4)
    u = two_tower.reference_tower(start, TT, "user", SHAPE_U, b["user_ids"], b["user_mask"])
    v = two_tower.reference_tower(start, TT, "item", SHAPE_I, b["item_ids"], b["item_mask"])
    ref_loss = two_tower.reference_loss(u, v, b["items"], b["log_q"], TT)
    assert pt.loss(pt.stage(b)) == pytest.approx(ref_loss, abs=1e-4)
    assert tf.loss(tf.stage(b)) == pytest.approx(ref_loss, abs=1e-4)
    # without the logQ term the loss changes: the correction is applied
    plain = two_tower.TwoTowerConfig(**{**TT.__dict__, "logq_correction": False})
    assert abs(two_tower.reference_loss(u, v, b["items"], b["log_q"], plain) - ref_loss) > 1e-3


@pytest.mark.parametrize("steps", [1, 4])
def test_two_tower_steps_match(towers, steps: int) -> None:
    (pt, tf), start = towers
    pt.set_params(start)
    tf.set_params(start)
    for s in range(steps):
        b = tt_batch(10 + s)
        pt.train_step(pt.stage(b))
        tf.train_step(tf.stage(b))
    a, c = pt.get_params(), tf.get_params()
    assert all(np.abs(a[k] - start[k]).max() > 0 for k in a)  # every parameter trained
    assert_params_close(a, c, start)


def test_two_tower_serving_top_k(towers) -> None:
    (pt, tf), start = towers
    pt.set_params(start)
    tf.set_params(start)
    items = pt.encode("item", ITEMS.ids, ITEMS.mask)
    users = pt.encode("user", USERS.ids, USERS.mask)
    want = top_k(users, items, 5)
    for impl in (pt, tf):
        impl.stage_corpus(items)
        got = impl.to_numpy(impl.retrieve(impl.stage_queries(users), 5))
        scores = users @ items.T
        # same scores at each rank (an exact tie may order differently)
        np.testing.assert_allclose(np.take_along_axis(scores, got, 1), np.take_along_axis(scores, want, 1),
                                   atol=1e-6)


NM = neumf.NeuMFConfig(gmf_dim=4, mlp_dim=4, mlp=(8, 4))


def nm_batch(seed: int, b: int = 24) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"users": rng.integers(0, 7, b), "items": rng.integers(0, 11, b),
            "labels": rng.integers(0, 2, b).astype(np.float32)}


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_neumf_parity(optimizer: str) -> None:
    pt, tf = TorchNeuMF(NM, 7, 11, optimizer, 0.1, seed=2), TFNeuMF(NM, 7, 11, optimizer, 0.1, seed=2)
    start = start_params(neumf.initial_params(NM, 7, 11, 2))
    for impl in (pt, tf):
        impl.set_params(start)
    b = nm_batch(0)
    ref = neumf.reference_logits(start, NM, b["users"], b["items"])
    np.testing.assert_allclose(pt.to_numpy(pt.infer(pt.stage(b))), ref, atol=1e-4)
    np.testing.assert_allclose(tf.to_numpy(tf.infer(tf.stage(b))), ref, atol=1e-4)
    assert pt.loss(pt.stage(b)) == pytest.approx(neumf.reference_loss(ref, b["labels"]), abs=1e-5)
    assert tf.loss(tf.stage(b)) == pytest.approx(neumf.reference_loss(ref, b["labels"]), abs=1e-5)
    for steps in (1, 4):
        for impl in (pt, tf):
            impl.set_params(start)
        for s in range(steps):
            pt.train_step(pt.stage(nm_batch(20 + s)))
            tf.train_step(tf.stage(nm_batch(20 + s)))
        assert_params_close(pt.get_params(), tf.get_params(), start)


# --- compressed tables: the ranking models' layout registry and embedding stages, read row by row ----------

def _stored_and_rows(ts, plan, params, counts=None):
    from recsys_impls.models import retrieval_tables as rt

    stored = rt.stored_form(ts, plan, params, counts)
    return stored, rt.lookup(ts, plan, stored)


@pytest.mark.parametrize("spec", ["hash:0.5", "qr:3", "mixed-dim:0.5", "tt:2,int8", "freq-prune:2,fp16"])
def test_compressed_two_tower_parity(spec: str) -> None:
    """Same parameters give the same tower outputs in both frameworks and the numpy oracle (trained form,
    then the stored form in its precision); 2 optimizer steps give the same parameters."""
    from recsys_impls.compression.section import master_plan
    from recsys_impls.compression.spec import parse_compression
    from recsys_impls.models import retrieval_tables as rt

    plan = parse_compression(spec)
    ts = two_tower.table_set(TT, SHAPE_U, SHAPE_I)
    pt, tf = (cls(TT, SHAPE_U, SHAPE_I, "adagrad", 0.1, seed=3, plan=plan)
              for cls in (torch_tt.TorchTwoTower, tf_tt.TFTwoTower))
    start = start_params(pt.get_params())
    assert start.keys() == tf.get_params().keys()
    pt.set_params(start)
    tf.set_params(start)
    b = tt_batch(0)
    _, rows = _stored_and_rows(ts, master_plan(plan), start)  # the trained form: float32, every row
    for side, ids, mask, shape in (("user", b["user_ids"], b["user_mask"], SHAPE_U),
                                   ("item", b["item_ids"], b["item_mask"], SHAPE_I)):
        ref = two_tower.reference_tower(start, TT, side, shape, ids, mask, rows)
        np.testing.assert_allclose(pt.encode(side, ids, mask), ref, atol=1e-4)
        np.testing.assert_allclose(tf.encode(side, ids, mask), ref, atol=1e-4)
    for s in range(2):
        pt.train_step(pt.stage(tt_batch(10 + s)))
        tf.train_step(tf.stage(tt_batch(10 + s)))
    after = pt.get_params()
    assert all(np.abs(after[k] - start[k]).max() > 0 for k in after)  # every group trained
    assert_params_close(after, tf.get_params(), start)
    counts = rt.id_counts(ts, [(b["user_ids"], b["user_mask"]), (b["item_ids"], b["item_mask"])])
    stored, rows = _stored_and_rows(ts, plan, after, counts)
    assert plan.precision == "fp32" or any("@" in k for k in stored)  # the stored tables are in the plan's precision
    pt.use_stored(stored)
    tf.use_stored(stored)
    for side, ids, mask, shape in (("user", b["user_ids"], b["user_mask"], SHAPE_U),
                                   ("item", b["item_ids"], b["item_mask"], SHAPE_I)):
        ref = two_tower.reference_tower(after, TT, side, shape, ids, mask, rows)
        np.testing.assert_allclose(pt.encode(side, ids, mask), ref, atol=1e-4)
        np.testing.assert_allclose(tf.encode(side, ids, mask), ref, atol=1e-4)


@pytest.mark.parametrize("spec", ["hash:0.5", "qr:2:add,int4"])
def test_compressed_neumf_parity(spec: str) -> None:
    from recsys_impls.compression.spec import parse_compression

    plan = parse_compression(spec)
    ts = neumf.table_set(NM, 7, 11)
    pt, tf = TorchNeuMF(NM, 7, 11, "sgd", 0.1, seed=2, plan=plan), TFNeuMF(NM, 7, 11, "sgd", 0.1, seed=2, plan=plan)
    start = start_params(pt.get_params())
    for impl in (pt, tf):
        impl.set_params(start)
    for s in range(2):
        pt.train_step(pt.stage(nm_batch(20 + s)))
        tf.train_step(tf.stage(nm_batch(20 + s)))
    after = pt.get_params()
    assert_params_close(after, tf.get_params(), start)
    stored, rows = _stored_and_rows(ts, plan, after)
    b = nm_batch(0)
    ref = neumf.reference_logits(after, NM, b["users"], b["items"], rows)
    for impl in (pt, tf):
        impl.use_stored(stored)
        np.testing.assert_allclose(impl.to_numpy(impl.infer(impl.stage(b))), ref, atol=1e-4)


def test_compressed_tables_start_like_the_plain_ones() -> None:
    """A layout's stand-in tables (hash buckets) draw from the plain tables' distribution, so the compressed
    and the plain model differ by the compression, not by their start; under the plain layout (a storage
    precision) the start is the plain model's own."""
    from recsys_impls.compression.spec import parse_compression
    from recsys_impls.models import retrieval_tables as rt

    user, item = two_tower.TowerShape(4000, (0,)), two_tower.TowerShape(3000, (0,))
    cfg = two_tower.TwoTowerConfig(embedding_dim=8, tower_mlp=(4,))
    plain = two_tower.initial_params(cfg, user, item, 1)
    ts = two_tower.table_set(cfg, user, item)
    hashed = rt.initial_params(ts, parse_compression("hash:0.5"), plain, 1)
    assert hashed["user.table"].shape == (2000, 8)
    assert hashed["user.table"].std() == pytest.approx(plain["user.table"].std(), rel=0.05)
    same = rt.initial_params(ts, parse_compression("int8"), plain, 1)
    assert all(np.array_equal(same[k], plain[k]) for k in plain)
