"""Named GPU settings (``cuda-amp-bf16``, ``cpu-xla``, ...) as DeviceConfigs, and why a pair is skipped.

One table shared by the asv GPU suite (benchmarks/bench_gpu.py) and benchmarks/gpu_check.sh, so both
mean the same thing by a setting's name. A setting is framework-neutral: ``cuda`` is PyTorch's
``cuda`` and TensorFlow's ``GPU:0``. Stdlib only, and no framework is imported here: asv discovery
and the skip decisions on a machine without a GPU stay instant. Whether a supported-looking pair
really runs is decided by the implementation itself (ScenarioUnsupported with its reason).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from typing import Any

from recsys_impls.config import DeviceConfig

# name -> DeviceConfig fields; device "cuda" is mapped per framework by device_config().
# Kept short on purpose: asv starts one process per (benchmark, parameter) pair, so every setting
# costs seconds even where it skips. torch.compile on CPU is left out (1-2 min of compilation per
# process on two cores, and not a GPU setting); the CLI runs it: --device cpu --compile torch-compile.
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu-fp32": {"device": "cpu"},
    "cpu-amp-bf16": {"device": "cpu", "precision": "amp-bf16"},
    "cpu-xla": {"device": "cpu", "compile": "xla"},
    "cuda-fp32": {"device": "cuda"},
    "cuda-tf32": {"device": "cuda", "precision": "tf32"},
    "cuda-amp-bf16": {"device": "cuda", "precision": "amp-bf16"},
    "cuda-amp-fp16": {"device": "cuda", "precision": "amp-fp16"},
    "cuda-compile": {"device": "cuda", "compile": "torch-compile"},
    "cuda-compile-max-autotune": {"device": "cuda", "compile": "torch-compile-max-autotune"},
    "cuda-graphs": {"device": "cuda", "compile": "cuda-graphs"},
    "cuda-pinned": {"device": "cuda", "pinned_memory": True},
    "cuda-xla": {"device": "cuda", "compile": "xla"},
}

# Model shape per kind of device: CPU settings stay small enough for two CI cores; GPU settings use
# the DLRM reference shape so that precision and compilation differences show in throughput.
CPU_PRESET = "tiny"
GPU_PRESET = "dlrm-ref"
# Training length per kind of device (TrainConfig fields over the preset's).
CPU_TRAIN = {"steps": 60, "batch_size": 256, "eval_samples": 10000, "latency_batches": 20}
GPU_TRAIN = {"steps": 300, "batch_size": 2048, "eval_samples": 100000, "latency_batches": 50}

_TORCH_ONLY_COMPILE = ("torch-compile", "torch-compile-max-autotune", "cuda-graphs")


def setting_names() -> list[str]:
    return list(SETTINGS)


def is_gpu(setting: str) -> bool:
    return _fields(setting)["device"] == "cuda"


def preset_for(setting: str) -> str:
    return GPU_PRESET if is_gpu(setting) else CPU_PRESET


def train_for(setting: str) -> dict[str, int]:
    return dict(GPU_TRAIN if is_gpu(setting) else CPU_TRAIN)


def device_config(framework: str, setting: str) -> DeviceConfig:
    """The validated DeviceConfig a setting means for a framework (``cuda`` -> ``GPU:0`` for tf)."""
    fields = dict(_fields(setting))
    if fields["device"] == "cuda" and framework == "tf":
        fields["device"] = "GPU:0"
    cfg = replace(DeviceConfig(), **fields)
    cfg.validate()
    return cfg


def static_skip_reason(framework: str, setting: str) -> str | None:
    """Why a framework never runs a setting, whatever the machine (None if it may)."""
    f = _fields(setting)
    compile_mode = f.get("compile", "none")
    if framework == "torch" and compile_mode == "xla":
        return f"{setting}: XLA (jit_compile) is TensorFlow's compiler here; PyTorch uses torch-compile"
    if framework == "tf" and compile_mode in _TORCH_ONLY_COMPILE:
        return f"{setting}: {compile_mode} is a PyTorch compile mode; TensorFlow compiles with xla"
    if framework == "tf" and f.get("pinned_memory"):
        return f"{setting}: pinned host memory is a PyTorch input-path option; TensorFlow stages its own buffers"
    return None


def gpu_absent_reason() -> str | None:
    """Why no NVIDIA GPU can be used here, without importing a framework; None if one may be.

    NVML is asked first; when it cannot answer, device nodes (/dev/nvidia0) still count as a GPU,
    so a missing pynvml never hides one (the framework then has the last word).
    """
    from recsys_impls.measure.nvml import _shutdown, open_nvml

    nvml, handles, reason = open_nvml()
    if nvml is not None:
        _shutdown(nvml)
        return None if handles else "no NVIDIA GPU visible"
    if os.path.exists("/dev/nvidia0") and os.environ.get("CUDA_VISIBLE_DEVICES", None) != "":
        return None
    return f"no NVIDIA GPU on this machine ({reason})"


def framework_absent_reason(framework: str) -> str | None:
    package = {"torch": "torch", "tf": "tensorflow"}[framework]
    if importlib.util.find_spec(package) is None:
        return f"framework {framework}: package '{package}' is not installed"
    return None


def skip_reason(framework: str, setting: str) -> str | None:
    """Why this pair cannot run on this machine, decided cheaply; None if it should be tried."""
    why = static_skip_reason(framework, setting) or framework_absent_reason(framework)
    if why is None and is_gpu(setting):
        absent = gpu_absent_reason()
        why = f"{setting}: {absent}" if absent else None
    return why


def _fields(setting: str) -> dict[str, Any]:
    if setting not in SETTINGS:
        from recsys_impls.errors import UsageError

        raise UsageError(f"setting {setting!r}: accepted: {', '.join(SETTINGS)}")
    return SETTINGS[setting]


def scenario_for_setting(framework: str, setting: str, **train: int) -> Any:
    """The Scenario a (framework, setting) pair runs: preset shape, training length, device config."""
    from dataclasses import asdict

    from recsys_impls.config import PRESETS, build_scenario

    layers: dict[str, dict[str, Any]] = {k: dict(v) for k, v in PRESETS[preset_for(setting)].items()}
    layers.setdefault("train", {}).update({**train_for(setting), **train})
    layers["device"] = asdict(device_config(framework, setting))
    layers["scenario"] = {"framework": framework}
    return build_scenario(layers)
