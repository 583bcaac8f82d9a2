"""Export orchestration: train (or not) the scenario's model, write each format with its manifest, and
check every export against the native model on held-out batches.

``--steps 0`` exports the shared seeded initial parameters (identical in both frameworks), which is how
the PyTorch and TensorFlow exports of the same parameters are compared.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls.base import Recommender
from recsys_impls.config import Scenario
from recsys_impls.data.batch import Batch
from recsys_impls.data.dataset import Dataset
from recsys_impls.errors import UsageError
from recsys_impls.serving import manifest as mf
from recsys_impls.serving.formats import LOSSY_FORMATS, PARITY_RUNTIME
from recsys_impls.serving.layout import to_padded

PARITY_BATCH = 256
PARITY_BATCHES = 4
# What an export writes (removed first by --force; nothing else in the folder is touched).
ARTIFACTS = ("model.pt2", "model-aoti.pt2", "model.onnx", "model-int8.onnx", "model-int8-tables.onnx",
             "savedmodel")


@dataclass
class TrainedModel:
    """The native model after ``steps`` training steps, with its (fitted) scenario and data."""

    impl: Recommender
    scenario: Scenario
    data: Dataset
    steps: int

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.impl.get_params()

    def held_out(self, samples: int) -> Batch:
        """The first ``samples`` of the eval split (never trained on)."""
        return self.data.eval.slice(0, min(samples, self.data.eval.batch_size))


def train_model(scenario: Scenario, steps: int, progress: bool = False) -> TrainedModel:
    """Build the scenario's native model and train it ``steps`` steps (0: the seeded initial parameters).

    Runs the same pre-flight check and start-up as ``execute``; training goes through the runner's
    timed loop. With 0 steps one batch of training data is still generated (the loader needs a split).
    """
    from recsys_impls import preflight, registry, startup
    from recsys_impls.data.loader import prepare
    from recsys_impls.runner import train, training_schedule

    if steps < 0:
        raise UsageError(f"--steps {steps}: accepted: 0 (the seeded initial parameters) or more")
    scenario = replace(scenario, train=replace(scenario.train, steps=max(steps, 1)))
    preflight.check(scenario)
    startup.prepare(scenario)
    scenario, data = prepare(scenario)
    impl = registry.build(scenario)
    if steps:
        batches, _ = training_schedule(data.train, scenario.train.batch_size, steps)
        train(impl, batches, min(scenario.train.warmup_steps, steps - 1), progress)
    return TrainedModel(impl, scenario, data, steps)


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse a folder that exists and is not empty unless ``force`` (then only our artifacts go)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise UsageError(f"--out {out_dir}: exists and is not empty; choose another folder or pass --force")
        for name in ARTIFACTS:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for path in out_dir.glob("manifest-*.json"):
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def stored_bytes(out_dir: Path, files: list[str]) -> int:
    total = 0
    for name in files:
        path = out_dir / name
        total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return total


def _framework_module(framework: str) -> Any:
    import importlib

    return importlib.import_module(f"recsys_impls.{'torch_impl' if framework == 'torch' else 'tf_impl'}.export")


def quantize_mlps(src: Path, dst: Path) -> list[str]:
    """ONNX Runtime dynamic int8 quantization of the MatMul/Gemm nodes that have a weight initializer
    (the MLP layers); the interaction's activation x activation products stay fp32. Returns the nodes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    weights = {init.name for init in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    onnx.save(model, str(src))
    nodes = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and any(x in weights for x in n.input)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice, on every call
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_quantize=nodes)
    finally:
        root.setLevel(level)
    return nodes


def check_compression(compression: str, formats: tuple[str, ...]) -> None:
    """The served module holds plain tables (fp32, or row-wise int8 in ``onnx-int8``): a compressed model
    exports only where that is its own form. ScenarioUnsupported (one line, exit 2) otherwise."""
    from recsys_impls.errors import ScenarioUnsupported

    if compression in ("", "none"):
        return
    if compression == "int8":
        other = [f for f in formats if f != "onnx-int8"]
        if other:
            raise ScenarioUnsupported(f"--compression int8 with --format {','.join(other)}: those formats hold fp32 "
                                      "tables, i.e. the training master weights, not the int8 model; use --format "
                                      "onnx-int8 (row-wise int8 tables, the same quantization)")
        return
    raise ScenarioUnsupported(f"--compression {compression}: export holds plain or row-wise int8 tables only; "
                              "accepted: none, int8 (with --format onnx-int8)")


def export_format(model: TrainedModel, fmt: str, out_dir: Path, onnx_exporter: str = "auto") -> dict[str, Any]:
    """Write one format and return its manifest facts (before parity)."""
    module = _framework_module(model.scenario.framework)
    config = model.scenario.model
    example = to_padded(model.held_out(8))
    if fmt != "onnx-int8":
        return module.export(fmt, config, model.params, out_dir, example, onnx_exporter)
    facts = module.export("onnx-int8-tables", config, model.params, out_dir, example, onnx_exporter)
    tables = out_dir / facts["files"][0]
    nodes = quantize_mlps(tables, out_dir / "model-int8.onnx")
    tables.unlink()
    return facts | {"files": ["model-int8.onnx"],
                    "compression": {"tables": "uint8 rows + float32 scale and bias per row (row-wise int8)",
                                    "mlps": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
                                    "quantized_nodes": nodes}}


def parity(runtime: Any, model: TrainedModel, lossy: bool) -> dict[str, Any]:
    """Max abs difference of probabilities, export vs native, on held-out batches."""
    batch = model.held_out(PARITY_BATCH * PARITY_BATCHES)
    chunks = batch.split(min(PARITY_BATCH, batch.batch_size)) or [batch]
    diffs = [np.abs(runtime.predict(to_padded(c)) - model.impl.predict(c)) for c in chunks]
    d = np.concatenate(diffs)
    out = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()), "samples": int(d.size),
           "batches": len(chunks), "tolerance": None if lossy else mf.PARITY_TOLERANCE, "against": "native predict",
           "runtime": runtime.name}
    out["ok"] = None if lossy else bool(out["max_abs_diff"] <= mf.PARITY_TOLERANCE)
    if lossy:
        out["tolerance_reason"] = "int8 export: lossy by design, the difference is recorded, not gated"
    return out


def export_all(model: TrainedModel, formats: tuple[str, ...], out_dir: Path, force: bool = False,
               threads: int = 1, onnx_exporter: str = "auto") -> dict[str, dict[str, Any]]:
    """Export every format into ``out_dir`` with its manifest and parity; returns the manifests by format.

    ``onnx_exporter`` (PyTorch): auto (dynamo, else TorchScript-based), dynamo or torchscript.
    """
    from recsys_impls.serving import runtimes

    check_compression(model.scenario.compression, formats)
    check_out_dir(out_dir, force)
    params = model.params
    checksum = mf.params_checksum(params)
    written: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        facts = export_format(model, fmt, out_dir, onnx_exporter)
        files = facts.pop("files")
        rt = runtimes.build(PARITY_RUNTIME[fmt], model.scenario.framework, out_dir, threads)
        facts["parity"] = parity(rt, model, fmt in LOSSY_FORMATS)
        facts["stored_bytes"] = stored_bytes(out_dir, files)
        facts["trained_steps"] = model.steps
        facts["seed"] = model.scenario.train.seed
        man = mf.build(fmt, model.scenario.framework, model.scenario.model, checksum, files, **facts)
        mf.save(out_dir, man)
        written[fmt] = man
    return written
