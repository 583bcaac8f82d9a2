"""Serving runtimes behind one small interface: ``predict(ServingInputs) -> probabilities [B]``.

Each runtime is built from an export folder (or, for the in-process ones, the trained model) and the
thread count the scenario asks for. Framework code is imported only when that runtime is built; an
execution provider that is not present here (CUDA, TensorRT) raises ScenarioUnsupported with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recsys_impls.errors import ScenarioUnsupported
from recsys_impls.serving.layout import OUTPUT_NAME, ServingInputs

_ORT_PROVIDERS = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-int8": "CPUExecutionProvider",
                  "onnxruntime-cuda": "CUDAExecutionProvider", "onnxruntime-tensorrt": "TensorrtExecutionProvider"}
_ORT_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}


class Runtime(ABC):
    """One way of running a served model."""

    name: str = ""

    @abstractmethod
    def predict(self, inputs: ServingInputs) -> np.ndarray:
        """Probabilities, float32 numpy [B], on the host."""

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name}


class FunctionRuntime(Runtime):
    """A runtime whose work is one framework callable (the loaders in torch_impl/tf_impl ``export``)."""

    def __init__(self, name: str, fn: Callable[[ServingInputs], np.ndarray], **facts: Any) -> None:
        self.name = name
        self._fn = fn
        self._facts = facts

    def predict(self, inputs: ServingInputs) -> np.ndarray:
        return np.asarray(self._fn(inputs), dtype=np.float32).reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, **self._facts}


def check_available(name: str) -> None:
    """ScenarioUnsupported now (before any training or export) when the runtime's provider is absent."""
    if not name.startswith("onnxruntime"):
        return
    try:
        import onnxruntime as ort
    except ImportError:
        raise ScenarioUnsupported(f"runtime {name}: package 'onnxruntime' is not installed") from None
    provider = _ORT_PROVIDERS[name]
    if provider not in ort.get_available_providers():
        raise ScenarioUnsupported(f"runtime {name}: ONNX Runtime here has no {provider} "
                                  f"(available: {', '.join(ort.get_available_providers())})")


class OnnxRuntime(Runtime):
    """An ONNX file in an ONNX Runtime InferenceSession with one execution provider."""

    def __init__(self, name: str, path: Path, threads: int) -> None:
        import onnxruntime as ort

        provider = _ORT_PROVIDERS[name]
        available = ort.get_available_providers()
        if provider not in available:
            raise ScenarioUnsupported(f"runtime {name}: ONNX Runtime here has no {provider} "
                                      f"(available: {', '.join(available)})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.name = name
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
        self._facts = {"onnxruntime_version": ort.__version__, "provider": provider, "file": path.name,
                       "intra_op_threads": threads}

    def predict(self, inputs: ServingInputs) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], inputs.feeds())[0].reshape(-1)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, **self._facts}


def build(name: str, framework: str, export_dir: Path | None, threads: int, impl: Any = None) -> Runtime:
    """The runtime ``name`` for a ``framework`` model; ``impl`` is the trained model (in-process runtimes)."""
    if name.startswith("onnxruntime"):
        fmt = "onnx-int8" if name == "onnxruntime-int8" else "onnx"
        return OnnxRuntime(name, Path(export_dir) / _ORT_FILES[fmt], threads)
    if framework == "torch":
        from recsys_impls.torch_impl import export as tx

        if name == "torch-eager":
            return FunctionRuntime(name, tx.native(impl), path="TorchDLRM.predict (fused EmbeddingBag)")
        if name == "torch-compile":
            cfg = impl.model_config
            return FunctionRuntime(name, tx.compiled(cfg, impl.get_params()),
                                   path="torch.compile(ServingNet, dynamic=True)")
        if name == "torch-export":
            return FunctionRuntime(name, tx.load_exported_program(Path(export_dir)), path="torch.export.load")
        if name == "torch-aoti":
            return FunctionRuntime(name, tx.load_aoti(Path(export_dir)), path="torch._inductor.aoti_load_package")
    if framework == "tf":
        from recsys_impls.tf_impl import export as fx

        if name == "tf-native":
            return FunctionRuntime(name, fx.native(impl), path="TFDLRM.predict (tf.function)")
        if name == "tf-savedmodel":
            return FunctionRuntime(name, fx.load_savedmodel(Path(export_dir)),
                                   path="tf.saved_model.load, signature serving_default")
    raise ValueError(f"runtime {name!r} for framework {framework!r}")
