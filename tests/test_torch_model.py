"""The PyTorch DLRM against the contract in recsys_impls/base.py and the numpy oracle."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recsys_impls.config import DeviceConfig, ModelConfig, Scenario, TrainConfig  # noqa: E402
from recsys_impls.data.batch import Batch  # noqa: E402
from recsys_impls.errors import ScenarioUnsupported, UsageError  # noqa: E402
from recsys_impls.init_params import initial_params, param_shapes, reference_forward  # noqa: E402
from recsys_impls.torch_impl.model import TorchDLRM  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny ops on a shared 2-core machine: OpenMP's second thread costs more than it gives."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = ModelConfig(num_dense=5, table_sizes=(7, 40, 3, 25), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(6, 3, 1))


def _scenario(optimizer: str = "sgd", lr: float = 0.1, config: ModelConfig = SMALL, **device: object) -> Scenario:
    return Scenario(
        model=config, train=TrainConfig(batch_size=16, optimizer=optimizer, learning_rate=lr, seed=3),
        device=DeviceConfig(**{"threads": 1, **device}),  # one thread: tiny ops, and no spinning under load
    ).validate()


def _batch(config: ModelConfig, b: int, seed: int, max_len: int = 3) -> Batch:
    """Multi-hot batch with variable lengths, some empty bags and (in small tables) repeated ids."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len + 1, size=(config.num_tables, b)).astype(np.int32)
    lengths[:, 0] = 0  # sample 0 has no ids at all
    lengths[1, 1:4] = 0
    ids = np.concatenate([rng.integers(0, n, size=int(lengths[f].sum())) for f, n in enumerate(config.table_sizes)])
    return Batch(
        dense=rng.normal(size=(b, config.num_dense)).astype(np.float32),
        ids=ids.astype(np.int64),
        lengths=lengths,
        labels=rng.integers(0, 2, size=b).astype(np.float32),
    )


def _dense_reference_grads(params: dict[str, np.ndarray], config: ModelConfig, batch: Batch) -> dict[str, np.ndarray]:
    """Gradients of the mean BCE loss by float64 autograd on a plain gather/index_add reimplementation."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(batch.dense, dtype=torch.float64)
    for k in range(len(config.bottom_mlp)):
        x = torch.relu(x @ p[f"bottom.{k}.weight"].T + p[f"bottom.{k}.bias"])
    vecs = [x]
    off = batch.feature_offsets()
    for f in range(config.num_tables):
        ids = torch.from_numpy(batch.ids[off[f] : off[f + 1]])
        seg = torch.from_numpy(np.repeat(np.arange(batch.batch_size), batch.lengths[f]))
        pooled = torch.zeros(batch.batch_size, config.embedding_dim, dtype=torch.float64)
        vecs.append(pooled.index_add(0, seg, p[f"emb.{f}"][ids]))
    t = torch.stack(vecs, 1)
    z = t @ t.transpose(1, 2)
    li, lj = np.tril_indices(config.num_tables + 1, -1)
    h = torch.cat([x, z[:, li, lj]], 1)
    for k in range(len(config.top_mlp)):
        h = h @ p[f"top.{k}.weight"].T + p[f"top.{k}.bias"]
        if k < len(config.top_mlp) - 1:
            h = torch.relu(h)
    labels = torch.tensor(batch.labels, dtype=torch.float64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(h[:, 0], labels)
    loss.backward()
    return {k: v.grad.numpy() for k, v in p.items()}


def test_interaction_backward_matches_autograd() -> None:
    from recsys_impls.torch_impl.interaction import DotInteraction

    inter = DotInteraction(4)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    pooled = torch.randn(3, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(inter, (x, pooled))
    t = torch.cat([x.unsqueeze(1), pooled], 1)
    li, lj = np.tril_indices(4, -1)
    plain = torch.cat([x, (t @ t.transpose(1, 2))[:, li, lj]], 1)
    torch.testing.assert_close(inter(x, pooled), plain)


def test_parameter_names_and_shapes_follow_the_contract() -> None:
    model = TorchDLRM(_scenario())
    params = model.get_params()
    assert {k: v.shape for k, v in params.items()} == param_shapes(SMALL)
    assert all(v.dtype == np.float32 for v in params.values())
    start = initial_params(SMALL, seed=3)
    for name, value in start.items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)


def test_predictions_match_numpy_reference_with_multi_hot_and_empty_bags() -> None:
    model = TorchDLRM(_scenario())
    batch = _batch(SMALL, 32, seed=1)
    assert (batch.lengths == 0).any() and (batch.lengths > 1).any()
    got = model.predict(batch)
    want = reference_forward(model.get_params(), SMALL, batch)
    assert got.shape == (32,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_sgd_step_matches_autograd_and_touches_only_looked_up_rows() -> None:
    lr = 0.5
    model = TorchDLRM(_scenario("sgd", lr))
    batch = _batch(SMALL, 16, seed=2)
    before = model.get_params()
    grads = _dense_reference_grads(before, SMALL, batch)
    model.train_step(model.stage(batch))
    after = model.get_params()
    for name in before:
        np.testing.assert_allclose(after[name], before[name] - lr * grads[name], atol=2e-6, rtol=1e-5, err_msg=name)
    untouched_rows = 0
    for f in range(SMALL.num_tables):
        seen = np.zeros(SMALL.table_sizes[f], bool)
        seen[batch.feature_ids(f)] = True
        untouched_rows += int((~seen).sum())
        np.testing.assert_array_equal(after[f"emb.{f}"][~seen], before[f"emb.{f}"][~seen])
        assert np.abs(after[f"emb.{f}"][seen] - before[f"emb.{f}"][seen]).max() > 0
    assert untouched_rows > 10, "the test batch should leave rows of the larger tables untouched"


def test_adagrad_two_steps_match_contract() -> None:
    lr, eps = 0.05, 1e-10
    model = TorchDLRM(_scenario("adagrad", lr))
    batches = [_batch(SMALL, 16, seed=4), _batch(SMALL, 16, seed=5)]
    p = {k: v.astype(np.float64) for k, v in model.get_params().items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    grads = []
    for batch in batches:
        g = _dense_reference_grads(p, SMALL, batch)
        grads.append(g)
        for k in p:
            s[k] += g[k] ** 2
            p[k] = p[k] - lr * g[k] / (np.sqrt(s[k]) + eps)
        model.train_step(model.stage(batch))
    got = model.get_params()
    for name in p:
        # Elements whose gradient is ~0 are ill-conditioned (g / (|g| + eps) flips with rounding):
        # compare those only loosely; every other element must match tightly.
        tiny = np.zeros(p[name].shape, bool)
        for g in grads:
            tiny |= (np.abs(g[name]) < 1e-6) & (g[name] != 0)
        np.testing.assert_allclose(got[name][~tiny], p[name][~tiny], atol=1e-5, rtol=1e-5, err_msg=name)
        assert np.all(np.abs(got[name][tiny] - p[name][tiny]) <= 2 * 2 * lr + 1e-5)
    untouched = np.ones(SMALL.table_sizes[1], bool)
    for batch in batches:
        untouched[batch.feature_ids(1)] = False
    assert untouched.any()
    np.testing.assert_array_equal(got["emb.1"][untouched], initial_params(SMALL, 3)["emb.1"][untouched])


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1.0), ("adagrad", 0.05)])
def test_loss_decreases_on_a_learnable_problem(optimizer: str, lr: float) -> None:
    config = ModelConfig(num_dense=3, table_sizes=(50, 20), embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
    model = TorchDLRM(_scenario(optimizer, lr, config))
    rng = np.random.default_rng(7)
    batches = []
    for _ in range(8):
        ids = np.concatenate([rng.integers(0, 50, 64), rng.integers(0, 20, 64)]).astype(np.int64)
        labels = (ids[:64] % 2 == 0).astype(np.float32)  # parity of feature 0's id decides the click
        batches.append(Batch(rng.normal(size=(64, 3)).astype(np.float32), ids, np.ones((2, 64), np.int32), labels))
    staged = [model.stage(b) for b in batches]
    start = np.mean([model.loss(s) for s in staged])
    for step in range(200):
        model.train_step(staged[step % 8])
    end = np.mean([model.loss(s) for s in staged])
    assert end < 0.25 * start, (start, end)


def test_set_params_round_trip_and_validation() -> None:
    model = TorchDLRM(_scenario())
    rng = np.random.default_rng(0)
    new = {k: rng.normal(size=v).astype(np.float32) for k, v in param_shapes(SMALL).items()}
    model.set_params(new)
    got = model.get_params()
    for k in new:
        np.testing.assert_array_equal(got[k], new[k])
    batch = _batch(SMALL, 8, seed=3)
    np.testing.assert_allclose(model.predict(batch), reference_forward(new, SMALL, batch), atol=1e-5)
    bad = dict(new, **{"emb.0": np.zeros((2, 4), np.float32)})
    with pytest.raises(UsageError, match="emb.0"):
        model.set_params(bad)
    with pytest.raises(UsageError, match="missing"):
        model.set_params({k: v for k, v in new.items() if k != "top.0.bias"})


def test_storage_bytes_are_serialized_sizes() -> None:
    model = TorchDLRM(_scenario())
    size = model.storage_bytes()
    emb_floats = sum(SMALL.table_sizes) * SMALL.embedding_dim
    all_floats = sum(int(np.prod(s)) for s in param_shapes(SMALL).values())
    assert size["embedding"] >= 4 * emb_floats
    assert size["model"] >= 4 * all_floats
    assert size["model"] > size["embedding"]


def test_describe_states_kernel_and_input_path() -> None:
    facts = TorchDLRM(_scenario()).describe()
    assert facts["input_conversion_in_timed_window"] is False
    assert "EmbeddingBag" in facts["embedding_kernel"]
    assert facts["precision"] == "fp32" and facts["compile"] == "none" and facts["device"] == "cpu"


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"compression": "int3-magic"}, "compression 'int3-magic'"),
        ({"parallel": "ddp"}, "parallel"),
        ({"device": DeviceConfig(device="cuda")}, "no CUDA device"),
        ({"device": DeviceConfig(device="cuda:1")}, "cuda:1"),
        ({"device": DeviceConfig(device="GPU:0")}, "TensorFlow"),
        ({"device": DeviceConfig(precision="tf32")}, "tf32"),
        ({"device": DeviceConfig(precision="amp-fp16")}, "amp-fp16"),
        ({"device": DeviceConfig(compile="cuda-graphs")}, "cuda-graphs"),
        ({"device": DeviceConfig(compile="xla")}, "xla"),
        ({"device": DeviceConfig(pinned_memory=True)}, "pinned_memory"),
    ],
)
def test_unsupported_scenarios_say_why(change: dict, reason: str) -> None:
    if torch.cuda.is_available() and "cuda" in str(change.get("device", "")):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ScenarioUnsupported, match=reason):
        TorchDLRM(replace(_scenario(), **change))


def test_amp_bf16_on_cpu_is_close_to_fp32_and_trains() -> None:
    model = TorchDLRM(_scenario(precision="amp-bf16"))
    batch = _batch(SMALL, 32, seed=8)
    want = reference_forward(model.get_params(), SMALL, batch)
    np.testing.assert_allclose(model.predict(batch), want, atol=3e-2)
    staged = model.stage(batch)
    before = model.get_params()
    model.train_step(staged)
    after = model.get_params()
    assert np.isfinite(model.loss(staged))
    assert any(np.abs(after[k] - before[k]).max() > 0 for k in before)
    assert model.describe()["autocast_dtype"] == "bfloat16"


def test_static_padded_inputs_pool_like_the_original() -> None:
    """The CUDA-graph buffers pad ids past the last offset; those must never be pooled (checked on CPU)."""
    from recsys_impls.torch_impl.graphs import StaticInputs

    model = TorchDLRM(_scenario())
    staged = model.stage(_batch(SMALL, 16, seed=9))
    static = StaticInputs.like(staged, capacity=staged.sparse.ids.numel() + 37)
    static.fill(staged)
    with torch.no_grad():
        padded = model.net(static.dense, static.as_sparse())
        plain = model.net(staged.dense, staged.sparse)
    torch.testing.assert_close(padded, plain, rtol=0, atol=0)


@pytest.mark.slow
def test_torch_compile_on_cpu_matches_eager() -> None:
    """The compiled dense arch predicts what eager does (compiled training steps: the retrieval models'
    test, which goes through the same ``TorchSettings.compiled``)."""
    eager = TorchDLRM(_scenario())
    compiled = TorchDLRM(_scenario(compile="torch-compile"))
    batch = _batch(SMALL, 16, seed=10)
    np.testing.assert_allclose(compiled.predict(batch), eager.predict(batch), atol=1e-5)
    assert compiled.describe()["compile"] == "torch-compile"


def test_package_import_does_not_import_torch() -> None:
    code = "import sys, recsys_impls.torch_impl; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- GPU paths: skipped here (no CUDA); they run when the suite is run on a GPU machine. ---------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to PyTorch")


@cuda
@pytest.mark.parametrize(
    "precision,compile_mode,atol",
    [("fp32", "none", 1e-5), ("tf32", "none", 1e-2), ("amp-bf16", "none", 3e-2), ("amp-fp16", "none", 1e-2),
     ("fp32", "torch-compile", 1e-5), ("fp32", "cuda-graphs", 1e-5), ("amp-bf16", "cuda-graphs", 3e-2)],
)
def test_gpu_settings_predict_close_to_reference_and_train(precision: str, compile_mode: str, atol: float) -> None:
    model = TorchDLRM(_scenario(device="cuda", precision=precision, compile=compile_mode, pinned_memory=True))
    batches = [_batch(SMALL, 16, seed=20 + i) for i in range(3)]
    for batch in batches:  # several batches: cuda graphs replay with different ids / nnz
        want = reference_forward(model.get_params(), SMALL, batch)
        np.testing.assert_allclose(model.predict(batch), want, atol=atol)
    staged = model.stage(batches[0])
    before = model.get_params()
    model.train_step(staged)
    model.synchronize()
    after = model.get_params()
    assert np.isfinite(model.loss(staged))
    assert any(np.abs(after[k] - before[k]).max() > 0 for k in before)
    facts = model.describe()
    assert facts["device"].startswith("cuda") and facts["precision"] == precision
    # after training, predictions (graph replays included) follow the new weights
    np.testing.assert_allclose(model.predict(batches[1]), reference_forward(after, SMALL, batches[1]), atol=atol)


@cuda
def test_gpu_fp32_sgd_step_matches_cpu() -> None:
    cpu, gpu = TorchDLRM(_scenario()), TorchDLRM(_scenario(device="cuda"))
    batch = _batch(SMALL, 16, seed=30)
    for m in (cpu, gpu):
        m.train_step(m.stage(batch))
    got, want = gpu.get_params(), cpu.get_params()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)


def test_sparse_adagrad_matches_torch_adagrad_with_repeated_rows() -> None:
    """The row-wise sparse Adagrad gives torch.optim.Adagrad's update (duplicate ids coalesced first)."""
    from recsys_impls.torch_impl.optim import SparseAdagrad

    torch.manual_seed(0)
    start = torch.randn(50, 8)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt_a = SparseAdagrad([ours], lr=0.1)
    opt_b = torch.optim.Adagrad([theirs], lr=0.1, eps=1e-10, initial_accumulator_value=0.0)
    for seed in range(3):
        ids = torch.tensor([3, 7, 3, 49, 0, 7, 3][seed:])
        values = torch.randn(ids.numel(), 8, generator=torch.Generator().manual_seed(seed))
        grad = torch.sparse_coo_tensor(ids[None], values, (50, 8))
        for p, opt in ((ours, opt_a), (theirs, opt_b)):
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-6, atol=1e-7)
    untouched = [r for r in range(50) if r not in (0, 3, 7, 49)]
    assert torch.equal(ours.detach()[untouched], start[untouched])


def test_dense_adagrad_is_fused_on_cpu_and_gives_the_adagrad_update() -> None:
    """Dense parameters get torch's fused Adagrad where it exists: s += g*g, p -= lr * g / (sqrt(s) + eps)."""
    from recsys_impls.torch_impl.optim import make_optimizers

    torch.manual_seed(0)
    start = torch.randn(6, 5)
    p = torch.nn.Parameter(start.clone())
    (opt,) = make_optimizers("adagrad", 0.1, [], [p])
    assert opt.defaults["fused"] is True and not opt.defaults["foreach"]
    acc, expect = torch.zeros_like(start), start.clone()
    for _ in range(3):
        g = torch.randn(6, 5)
        p.grad = g.clone()
        opt.step()
        acc += g * g
        expect -= 0.1 * g / (acc.sqrt() + 1e-10)
    torch.testing.assert_close(p.detach(), expect, rtol=1e-6, atol=1e-6)


def test_torch_size_report_counts_what_torch_save_writes() -> None:
    import io

    from recsys_impls.torch_impl.model import serialized_size

    state = {"w": torch.arange(1000, dtype=torch.float32).reshape(100, 10), "b": torch.zeros(3)}
    buf = io.BytesIO()
    torch.save(state, buf)
    assert serialized_size(state) == buf.tell()
