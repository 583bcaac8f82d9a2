"""The environment fingerprint stored beside every result, and a GPU-aware asv machine name.

asv's machine record has CPU, OS and RAM fields but nothing about GPUs, drivers or CUDA, so two
results from the same host with different GPUs would look comparable. The fingerprint records
those facts, and ``machine_name`` puts the GPU into the name asv files results under.

Framework versions come from package metadata; torch and TensorFlow are only asked about CUDA
when the caller has already imported them (importing either costs seconds).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import sys
from typing import Any

from recsys_impls.measure.nvml import _shutdown, _text, nvml_error_reason, open_nvml

PACKAGES = (
    "numpy", "torch", "tensorflow", "tf-keras", "torchrec", "fbgemm-gpu", "fbgemm-gpu-cpu",
    "nvidia-ml-py", "asv", "recsys-bench",
)

# Environment variables that change how fast the same code runs.
ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "KMP_AFFINITY",
    "KMP_BLOCKTIME", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE", "PYTORCH_CUDA_ALLOC_CONF", "TORCH_CUDNN_V8_API_ENABLED", "TORCHINDUCTOR_MAX_AUTOTUNE",
    "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "XLA_FLAGS",
    "TF_GPU_ALLOCATOR", "TF_FORCE_GPU_ALLOW_GROWTH", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
    "GLIBC_TUNABLES", "RECSYS_HUGE_PAGES",
)

# CPU features that decide which kernels FBGEMM, oneDNN and XLA pick.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")

_NVML_CLOCK_SM = 1
_NVML_CLOCK_MEM = 2


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cpu_facts() -> dict[str, Any]:
    """CPU model, logical/physical/usable cores and the ISA flags that matter for kernels."""
    info = _read("/proc/cpuinfo") or ""
    model = None
    cores: set[tuple[str, str]] = set()
    flags: set[str] = set()
    phys = core = None
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif not line.strip():
            if phys is not None and core is not None:
                cores.add((phys, core))
            phys = core = None
    if phys is not None and core is not None:
        cores.add((phys, core))
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "model": model or platform.processor() or None,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cores": usable,  # after taskset / cgroup affinity
        "flags": [f for f in CPU_FLAGS if f in flags],
    }


def memory_total_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def framework_cuda() -> dict[str, Any]:
    """CUDA/cuDNN as the already-imported frameworks see them; frameworks not imported are skipped."""
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        t: dict[str, Any] = {"version": getattr(torch, "__version__", None), "cuda": torch.version.cuda}
        try:
            t["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            t["cuda_available"] = bool(torch.cuda.is_available())
            if t["cuda_available"]:
                t["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                t["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        except Exception as exc:  # noqa: BLE001 - a broken CUDA install is a fact to record, not a crash
            t["error"] = f"{type(exc).__name__}: {exc}"
        t["num_threads"] = torch.get_num_threads()
        out["torch"] = t
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "sysconfig"):
        f: dict[str, Any] = {"version": getattr(tf, "__version__", None)}
        try:
            build = tf.sysconfig.get_build_info()
            f["cuda"] = build.get("cuda_version")
            f["cudnn"] = build.get("cudnn_version")
            f["built_with_cuda"] = bool(build.get("is_cuda_build"))
        except Exception as exc:  # noqa: BLE001
            f["error"] = f"{type(exc).__name__}: {exc}"
        out["tensorflow"] = f
    return out


def _cuda_version(v: int | None) -> str | None:
    """NVML's 12040 -> "12.4"."""
    if v is None:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def gpu_facts(nvml: Any | None = None) -> dict[str, Any]:
    """Driver, CUDA driver version and per-GPU name, UUID, memory, power limit and max clocks."""
    nv, handles, reason = open_nvml(nvml)
    if nv is None:
        return {"driver": None, "cuda_driver": None, "gpus": [], "reason": reason}

    def ask(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - a field the GPU lacks is None
            return None

    try:
        gpus = []
        for i, h in handles:
            mem = ask(nv.nvmlDeviceGetMemoryInfo, h)
            limit = ask(nv.nvmlDeviceGetPowerManagementLimit, h)
            enforced = ask(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            name = ask(nv.nvmlDeviceGetName, h)
            uuid = ask(nv.nvmlDeviceGetUUID, h)
            gpus.append({
                "index": i,
                "name": None if name is None else _text(name),
                "uuid": None if uuid is None else _text(uuid),
                "memory_total_bytes": None if mem is None else int(mem.total),
                "power_limit_w": None if limit is None else limit / 1000.0,
                "enforced_power_limit_w": None if enforced is None else enforced / 1000.0,
                "max_sm_clock_mhz": ask(nv.nvmlDeviceGetMaxClockInfo, h, _NVML_CLOCK_SM),
                "max_mem_clock_mhz": ask(nv.nvmlDeviceGetMaxClockInfo, h, _NVML_CLOCK_MEM),
            })
        driver = ask(nv.nvmlSystemGetDriverVersion)
        return {
            "driver": None if driver is None else _text(driver),
            "cuda_driver": _cuda_version(ask(nv.nvmlSystemGetCudaDriverVersion)),
            "gpus": gpus,
            "reason": None,
        }
    except Exception as exc:  # noqa: BLE001
        return {"driver": None, "cuda_driver": None, "gpus": [], "reason": nvml_error_reason(exc)}
    finally:
        _shutdown(nv)


def gpu_tag(names: list[str]) -> str:
    """Short GPU label for machine names: ["NVIDIA H100 80GB HBM3"] -> "h100", two of them -> "2xh100"."""
    if not names:
        return "cpu"
    tags: list[str] = []
    for name in names:
        words = [w for w in re.split(r"[\s_]+", name) if w.lower() not in ("nvidia", "tesla", "geforce", "quadro")]
        if not words:
            tags.append("gpu")
            continue
        first = words[0].split("-")[0].lower()
        if first in ("rtx", "gtx", "titan") and len(words) > 1:
            first += words[1].split("-")[0].lower()
        tags.append(re.sub(r"[^a-z0-9]", "", first) or "gpu")
    parts = []
    for tag in dict.fromkeys(tags):
        n = tags.count(tag)
        parts.append(f"{n}x{tag}" if n > 1 else tag)
    return "+".join(parts)


def machine_name(fingerprint: dict[str, Any] | None = None) -> str:
    """A suggested asv machine name, "<short hostname>-<gpu tag>", e.g. "ci-runner-cpu", "node7-h100"."""
    fp = fingerprint or environment_fingerprint()
    host = (fp.get("hostname") or "host").split(".")[0].lower()
    host = re.sub(r"[^a-z0-9-]+", "-", host).strip("-") or "host"
    names = [g["name"] or "gpu" for g in fp.get("gpu", {}).get("gpus", [])]
    return f"{host}-{gpu_tag(names)}"


def environment_fingerprint(nvml: Any | None = None) -> dict[str, Any]:
    """Everything about this machine and software that a result's speed depends on (the record's "env")."""
    fp: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "cpu": cpu_facts(),
        "memory_total_bytes": memory_total_bytes(),
        "gpu": gpu_facts(nvml),
        "frameworks": framework_cuda(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
    }
    fp["machine_name"] = machine_name(fp)
    return fp
