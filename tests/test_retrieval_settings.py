"""GPU settings of the retrieval models, checked on CPU: a setting changes how the same model computes, not
what it computes. amp-bf16 (both frameworks) stays within bf16 rounding of fp32; XLA and torch.compile
match eager; the record says which setting ran; impossible settings are refused for what they are."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from recsys_impls.config import DeviceConfig, build_scenario  # noqa: E402
from recsys_impls.models import neumf, two_tower  # noqa: E402
from recsys_impls.tf_impl.neumf import TFNeuMF  # noqa: E402
from recsys_impls.tf_impl.two_tower import TFTwoTower  # noqa: E402
from recsys_impls.torch_impl.neumf import TorchNeuMF  # noqa: E402
from recsys_impls.torch_impl.two_tower import TorchTwoTower  # noqa: E402
from tests.test_retrieval_parity import NM, SHAPE_I, SHAPE_U, TT, nm_batch, start_params, tt_batch  # noqa: E402

BACKENDS = {("torch", "two-tower"): TorchTwoTower, ("tf", "two-tower"): TFTwoTower,
            ("torch", "neumf"): TorchNeuMF, ("tf", "neumf"): TFNeuMF}


def build(framework: str, arch: str, device: DeviceConfig) -> tuple[object, dict[str, np.ndarray]]:
    """A backend model under ``device`` and a common start (SGD: its update is proportional to the gradient)."""
    cls = BACKENDS[(framework, arch)]
    if arch == "two-tower":
        impl = cls(TT, SHAPE_U, SHAPE_I, "sgd", 0.1, seed=3, device=device)
        start = start_params(two_tower.initial_params(TT, SHAPE_U, SHAPE_I, 3))
    else:
        impl = cls(NM, 7, 11, "sgd", 0.1, seed=2, device=device)
        start = start_params(neumf.initial_params(NM, 7, 11, 2))
    impl.set_params(start)
    return impl, start


def outputs(impl: object, arch: str) -> np.ndarray:
    if arch == "two-tower":
        b = tt_batch(0)
        return np.concatenate([impl.encode("user", b["user_ids"], b["user_mask"]),
                               impl.encode("item", b["item_ids"], b["item_mask"])])
    return impl.to_numpy(impl.infer(impl.stage(nm_batch(0))))


def train(impl: object, arch: str, steps: int = 3) -> dict[str, np.ndarray]:
    for s in range(steps):
        impl.train_step(impl.stage(tt_batch(20 + s) if arch == "two-tower" else nm_batch(20 + s)))
    return impl.get_params()


def assert_same_model(a: object, b: object, arch: str, start: dict, atol: float, step_rtol: float) -> None:
    """Same outputs within ``atol``; after three steps the same parameters, within ``step_rtol`` of the
    update's own size."""
    got, want = outputs(a, arch), outputs(b, arch)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=atol)
    pa, pb = train(a, arch), train(b, arch)
    for name in pb:
        step = np.abs(pb[name] - start[name]).max()
        assert pa[name].dtype == np.float32  # the variables stay fp32 under AMP
        np.testing.assert_allclose(pa[name], pb[name], atol=step_rtol * step + 1e-6, err_msg=name)


@pytest.mark.parametrize(("framework", "arch"), list(BACKENDS))
def test_amp_bf16_computes_the_fp32_model_in_bf16(framework: str, arch: str) -> None:
    bf16, start = build(framework, arch, DeviceConfig(precision="amp-bf16"))
    fp32, _ = build(framework, arch, DeviceConfig())
    got, want = outputs(bf16, arch), outputs(fp32, arch)
    assert np.abs(got - want).max() > 0  # the dense part really ran in bf16
    assert_same_model(bf16, fp32, arch, start, atol=3e-2, step_rtol=0.1)
    facts = bf16.describe()
    assert facts.get("autocast_dtype", facts.get("compute_dtype")) == "bfloat16"


@pytest.mark.parametrize("arch", ["two-tower", "neumf"])
def test_xla_matches_eager(arch: str) -> None:
    xla, start = build("tf", arch, DeviceConfig(compile="xla"))
    eager, _ = build("tf", arch, DeviceConfig())
    assert_same_model(xla, eager, arch, start, atol=1e-5, step_rtol=1e-4)
    assert xla.describe()["compiled"] == list(xla.dense_parts) and eager.describe()["compiled"] == []


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    compiled, start = build("torch", "neumf", DeviceConfig(compile="torch-compile"))
    eager, _ = build("torch", "neumf", DeviceConfig())
    assert_same_model(compiled, eager, "neumf", start, atol=1e-5, step_rtol=1e-4)
    assert compiled.describe()["compiled"] == ["head"]


def test_two_tower_serves_in_the_compute_dtype() -> None:
    """Under amp-bf16 the corpus and queries are bf16 tensors; top-k over them still finds the fp32 top-1
    for nearly every query (the scores differ only by bf16 rounding)."""
    import torch

    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(500, 8)).astype(np.float32)
    queries = rng.normal(size=(64, 8)).astype(np.float32)
    found = {}
    for precision in ("fp32", "amp-bf16"):
        impl, _ = build("torch", "two-tower", DeviceConfig(precision=precision))
        impl.stage_corpus(corpus)
        assert impl.corpus.dtype == (torch.bfloat16 if precision == "amp-bf16" else torch.float32)
        found[precision] = impl.to_numpy(impl.retrieve(impl.stage_queries(queries), 10))
    assert (found["amp-bf16"][:, 0] == found["fp32"][:, 0]).mean() >= 0.9


def test_record_names_the_setting_and_refusals() -> None:
    from recsys_impls.execute import execute, execute_or_record

    rec = execute(build_scenario({"model": {"arch": "neumf", "table_sizes": [60, 80]},
                                  "device": {"precision": "amp-bf16", "threads": 1},
                                  "train": {"steps": 4, "batch_size": 64, "latency_batches": 2}}))
    rec.validate()
    assert rec["implementation"]["autocast_dtype"] == "bfloat16" and rec["implementation"]["precision"] == "amp-bf16"
    assert rec["energy"]["reason"] and rec["memory"]["peak_device_bytes_reason"].startswith("device is cpu")
    for device, why in (({"precision": "amp-fp16"}, "needs a CUDA device"),
                        ({"compile": "xla"}, "XLA is the TensorFlow compile mode"),
                        ({"pinned_memory": True}, "only matter for copies to a CUDA device")):
        rec = execute_or_record(build_scenario({"model": {"arch": "two-tower"}, "device": device}))
        assert rec["status"] == "skipped" and why in rec["error"], rec["error"]
    rec = execute_or_record(build_scenario({"model": {"arch": "two-tower"}, "scenario": {"framework": "tf"},
                                            "device": {"compile": "torch-compile"}}))
    assert rec["status"] == "skipped" and "TensorFlow accepts none, xla" in rec["error"]
