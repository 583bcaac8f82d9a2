"""Environment fingerprint and GPU-aware machine names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recsys_impls.measure.fake_nvml import FakeGpu, FakeNvml, NVMLError_LibraryNotFound
from recsys_impls.measure.fingerprint import environment_fingerprint, gpu_facts, gpu_tag, machine_name


@pytest.mark.parametrize(("names", "tag"), [
    ([], "cpu"),
    (["NVIDIA H100 80GB HBM3"], "h100"),
    (["NVIDIA H100 80GB HBM3"] * 2, "2xh100"),
    (["NVIDIA A100-SXM4-40GB"], "a100"),
    (["Tesla V100-SXM2-16GB"], "v100"),
    (["NVIDIA GeForce RTX 4090"], "rtx4090"),
    (["NVIDIA H200", "NVIDIA L4"], "h200+l4"),
])
def test_gpu_tag(names: list[str], tag: str) -> None:
    assert gpu_tag(names) == tag


def test_fingerprint_with_fake_gpus() -> None:
    nv = FakeNvml([FakeGpu(), FakeGpu(uuid="GPU-2")])
    fp = environment_fingerprint(nvml=nv)
    g = fp["gpu"]
    assert g["reason"] is None and g["driver"] == "550.54.15" and g["cuda_driver"] == "12.4"
    assert [x["uuid"] for x in g["gpus"]] == ["GPU-00000000-1111-2222-3333-444444444444", "GPU-2"]
    assert g["gpus"][0]["power_limit_w"] == 700.0 and g["gpus"][0]["max_sm_clock_mhz"] == 1980
    assert g["gpus"][0]["memory_total_bytes"] == 80 << 30
    assert fp["machine_name"].endswith("-2xh100")
    assert nv.inits == nv.shutdowns == 1
    json.dumps(fp)  # the record is JSON


def test_fingerprint_without_gpu() -> None:
    fp = environment_fingerprint(nvml=FakeNvml(init_error=NVMLError_LibraryNotFound()))
    assert fp["gpu"]["gpus"] == [] and "NVMLError_LibraryNotFound" in fp["gpu"]["reason"]
    assert fp["machine_name"].endswith("-cpu")
    assert fp["cpu"]["logical_cores"] >= 1
    assert fp["python"].count(".") == 2
    assert fp["packages"]["numpy"]
    assert machine_name(fp) == fp["machine_name"]
    assert gpu_facts(FakeNvml(gpus=[]))["reason"].startswith("no NVIDIA device")


def test_cheap_import_and_no_framework_import() -> None:
    code = (
        "import sys, recsys_impls.measure as m\n"
        "assert 'pynvml' not in sys.modules, 'pynvml imported at module level'\n"
        "fp = m.environment_fingerprint()\n"
        "bad = [x for x in ('torch', 'tensorflow') if x in sys.modules]\n"
        "assert not bad, bad\n"
        "assert fp['frameworks'] == {}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_torch_cuda_facts_when_torch_imported() -> None:
    torch = pytest.importorskip("torch")
    fp = environment_fingerprint(nvml=FakeNvml(gpus=[]))
    t = fp["frameworks"]["torch"]
    assert t["version"] == torch.__version__ and t["cuda"] == torch.version.cuda
    assert t["cuda_available"] == torch.cuda.is_available()
