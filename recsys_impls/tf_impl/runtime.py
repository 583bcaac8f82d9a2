"""Process-wide TensorFlow settings taken from a scenario's DeviceConfig.

TensorFlow fixes its thread pools and GPU memory options when its runtime initialises (the first op
or device query), so these settings are applied before anything else and a later, conflicting request
is reported as ScenarioUnsupported rather than silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from recsys_impls import threads as thread_policy
from recsys_impls.config import DeviceConfig
from recsys_impls.errors import ScenarioUnsupported

_TF_COMPILE_MODES = ("none", "xla")


@dataclass(frozen=True)
class Runtime:
    """What the model needs to know about where and how it computes."""

    device: str  # TensorFlow device name, e.g. "/CPU:0" or "/GPU:0"
    compute_dtype: tf.DType  # dtype of the MLP and interaction math
    loss_scaling: bool  # dynamic loss scaling (fp16)
    xla: bool  # jit-compile the dense part
    facts: dict[str, Any] = field(default_factory=dict)


def apply_threads(settings: thread_policy.ThreadSettings) -> dict[str, Any]:
    """Size TensorFlow's intra-op and inter-op pools; returns the sizes TensorFlow reports afterwards.

    Both pools are fixed when the eager context initialises (the first op or logical-device query);
    a different request after that cannot take effect and is reported in ``errors``, not raised.
    """
    errors = []
    pools = (("intra", tf.config.threading.get_intra_op_parallelism_threads,
              tf.config.threading.set_intra_op_parallelism_threads, settings.intra_op),
             ("inter", tf.config.threading.get_inter_op_parallelism_threads,
              tf.config.threading.set_inter_op_parallelism_threads, settings.inter_op))
    for name, get, set_, want in pools:
        if get() != want:
            try:
                set_(want)
            except RuntimeError:
                errors.append(f"tf {name}-op threads stay {get() or 'default'} (requested {want}): "
                              "TensorFlow in this process already initialised its thread pools")
    actual: dict[str, Any] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                              "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    thread_policy.note_applied("tf", settings, {"actual": dict(actual), "errors": errors})
    return {**actual, "requested": {"intra_op": settings.intra_op, "inter_op": settings.inter_op},
            "errors": errors}


def _configure_threads(threads: int) -> dict[str, Any]:
    settings = thread_policy.resolve(threads)
    current = tf.config.threading.get_intra_op_parallelism_threads()
    # An intra-op pool already of the requested size was chosen by this process's launcher (the
    # distributed workers size both pools themselves; a parameter-server chief keeps TF's inter-op
    # default, which it needs) or by an earlier scenario: leave both pools as they are.
    if current != settings.intra_op:
        applied = apply_threads(settings)
    else:
        applied = {"intra_op": current, "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
        kept = [] if applied["inter_op"] == settings.inter_op else [
            f"tf inter-op threads kept at {applied['inter_op'] or 'default'} (requested {settings.inter_op}): "
            "sized in this process before the model was built"]
        thread_policy.note_applied("tf", settings, {"actual": dict(applied), "errors": kept})
    if threads and applied["intra_op"] != threads:
        raise ScenarioUnsupported(
            f"threads={threads}: TensorFlow in this process already initialised its thread pools "
            f"with intra-op threads={current or 'default'}; run the scenario in a fresh process"
        )
    return {"intra_op_threads": applied["intra_op"], "inter_op_threads": applied["inter_op"]}


def probe_devices() -> list[Any]:
    """List the physical devices (loads the CUDA platform, if any) without initialising the context.

    The thread pools and GPU memory options stay settable; the start-up messages of this probe come
    out here, where ``recsys_impls.startup`` can keep them off the terminal.
    """
    return tf.config.list_physical_devices()


def _resolve_device(name: str) -> tuple[str, dict[str, Any]]:
    if name == "cpu":
        return "/CPU:0", {}
    m = re.fullmatch(r"GPU:(\d+)", name)
    if not m:
        raise ScenarioUnsupported(
            f"device {name}: TensorFlow names GPUs GPU:N (for example GPU:0); cuda/cuda:N are PyTorch names"
        )
    index = int(m.group(1))
    gpus = tf.config.list_physical_devices("GPU")
    if index >= len(gpus):
        found = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
        build = "a CUDA build" if tf.test.is_built_with_cuda() else "a build without CUDA"
        raise ScenarioUnsupported(f"device {name}: TensorFlow ({build}) sees {found} on this machine")
    growth = True
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # runtime already initialised: keep whatever was set
            growth = growth and bool(tf.config.experimental.get_memory_growth(gpu))
    details = tf.config.experimental.get_device_details(gpus[index])
    return f"/GPU:{index}", {"gpu_memory_growth": growth, "gpu_name": details.get("device_name"),
                             "compute_capability": details.get("compute_capability")}


def configure(device: DeviceConfig) -> Runtime:
    """Apply the DeviceConfig to TensorFlow and describe the result; raises ScenarioUnsupported."""
    if device.compile not in _TF_COMPILE_MODES:
        raise ScenarioUnsupported(
            f"compile {device.compile}: a PyTorch mode; TensorFlow accepts {', '.join(_TF_COMPILE_MODES)}"
        )
    if device.pinned_memory:
        raise ScenarioUnsupported(
            "pinned_memory: a PyTorch input-path option; TensorFlow manages its own staging buffers "
            "and exposes no pinned host tensors"
        )
    facts: dict[str, Any] = {"tensorflow": tf.__version__}
    facts.update(_configure_threads(device.threads))
    tf_device, gpu_facts = _resolve_device(device.device)
    facts.update(gpu_facts)
    on_gpu = tf_device.startswith("/GPU")
    if device.precision == "tf32" and not on_gpu:
        raise ScenarioUnsupported("precision tf32: a tensor-core mode of NVIDIA GPUs; on CPU use fp32")
    # TensorFlow enables TF32 by default on Ampere and newer; fp32 must mean full fp32.
    tf.config.experimental.enable_tensor_float_32_execution(device.precision == "tf32")
    facts["tf32"] = tf.config.experimental.tensor_float_32_execution_enabled()
    compute = {"amp-fp16": tf.float16, "amp-bf16": tf.bfloat16}.get(device.precision, tf.float32)
    facts["compute_dtype"] = compute.name
    facts["loss_scaling"] = "dynamic" if compute == tf.float16 else None
    facts["xla"] = device.compile == "xla"
    return Runtime(device=tf_device, compute_dtype=compute, loss_scaling=compute == tf.float16,
                   xla=device.compile == "xla", facts=facts)
