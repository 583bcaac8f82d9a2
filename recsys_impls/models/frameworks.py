"""The two backends (PyTorch, TensorFlow): package, module paths and what each supports."""

from __future__ import annotations

from recsys_impls.config import COMPILE_MODES, PRECISIONS
from recsys_impls.models.spec import Backend, register_backend

TORCH = register_backend(Backend(
    name="torch", package="torch", label="PyTorch",
    modules={
        "model": "recsys_impls.torch_impl.model:TorchDLRM",
        "compressed": "recsys_impls.torch_impl.compress_model:CompressedTorchDLRM",
        "peaks": "recsys_impls.torch_impl.peaks:measure",
        "profiler": "recsys_impls.profiling:torch_profiler_trace",
        "launcher": "recsys_impls.parallel.launch:run_group",
    },
    precisions=PRECISIONS,
    compile_modes=tuple(m for m in COMPILE_MODES if m != "xla"),
    parallel_modes=("none", "threads", "ddp", "sharded"),
))

TF = register_backend(Backend(
    name="tf", package="tensorflow", label="TensorFlow",
    modules={
        "model": "recsys_impls.tf_impl.model:TFDLRM",
        "compressed": "recsys_impls.tf_impl.compress_model:CompressedTFDLRM",
        "peaks": "recsys_impls.tf_impl.peaks:measure",
        "profiler": "recsys_impls.profiling:tf_profiler_trace",
        "launcher": "recsys_impls.parallel.tf_launch",
    },
    precisions=PRECISIONS,
    compile_modes=("none", "xla"),
    parallel_modes=("none", "threads", "ddp", "mwms", "sharded", "ps"),
))
