from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlgpu.devices import detect, select, unsupported_reason
from dlgpu.devices.cpu import cgroup_cpu_limit, cpu_flags, cpu_model_name, native_bf16, usable_cores
from dlgpu.devices.detect import probe_cuda
from dlgpu.errors import BadInput
from dlgpu.results import DeviceInfo
from fakes import fake_cuda_torch

A100 = dict(name="NVIDIA A100-SXM4-80GB", total_memory=85_899_345_920, major=8, minor=0,
            multi_processor_count=108, uuid="GPU-1234")
V100 = dict(name="Tesla V100-SXM2-16GB", total_memory=17_179_869_184, major=7, minor=0,
            multi_processor_count=80, uuid="GPU-5678")


def test_real_detection_always_has_the_cpu_first() -> None:
    devices, absent = detect()
    assert devices[0].id == "cpu" and devices[0].kind == "cpu"
    assert devices[0].threads_used >= 1
    assert devices[0].memory_bytes > 0
    # Where no CUDA (or ROCm) device is present, the CUDA probe says why rather than failing; where one is, it
    # is listed after the CPU and no reason is given.
    has_cuda = any(d.kind == "cuda" for d in devices)
    assert has_cuda == torch.cuda.is_available()
    assert bool(absent.get("cuda")) is not has_cuda


def test_cuda_probe_reads_properties_through_the_seam() -> None:
    found, why = probe_cuda(fake_cuda_torch([A100, V100]))
    assert why is None
    assert [d.id for d in found] == ["cuda:0", "cuda:1"]
    assert found[0].compute_capability == "8.0" and found[1].compute_capability == "7.0"
    assert found[0].memory_bytes == 85_899_345_920
    assert found[0].backend == "cuda"


def test_rocm_devices_appear_as_cuda_with_rocm_backend() -> None:
    mi = dict(name="AMD Instinct MI250X", total_memory=68_702_699_520, major=9, minor=0, gcnArchName="gfx90a")
    found, _ = probe_cuda(fake_cuda_torch([mi], hip="6.2"))
    assert found[0].backend == "rocm" and found[0].details["gcn_arch"] == "gfx90a"
    assert unsupported_reason(found[0], "tf32") is not None
    assert unsupported_reason(found[0], "bf16") is None


def test_detect_with_fake_gpus_keeps_cpu_and_adds_them() -> None:
    devices, absent = detect(fake_cuda_torch([A100]))
    assert [d.id for d in devices] == ["cpu", "cuda:0"]
    assert "cuda" not in absent and "mps" in absent


def test_precision_support_by_compute_capability() -> None:
    a100, v100 = probe_cuda(fake_cuda_torch([A100, V100]))[0]
    for p in ("fp32", "tf32", "bf16", "fp16"):
        assert unsupported_reason(a100, p) is None
    assert "8.0" in (unsupported_reason(v100, "tf32") or "")
    assert "8.0" in (unsupported_reason(v100, "bf16") or "")
    assert unsupported_reason(v100, "fp16") is None


def test_cpu_precisions() -> None:
    cpu = detect()[0][0]
    assert unsupported_reason(cpu, "fp32") is None
    assert unsupported_reason(cpu, "bf16") is None
    assert "bf16" in (unsupported_reason(cpu, "fp16") or "")
    assert "Ampere" in (unsupported_reason(cpu, "tf32") or "")


def test_select_resolves_kinds_and_ids() -> None:
    devices, _ = detect(fake_cuda_torch([A100, V100]))
    assert [d.id for d in select(devices, ["cuda"])] == ["cuda:0", "cuda:1"]
    assert [d.id for d in select(devices, ["cuda:1", "cpu"])] == ["cuda:1", "cpu"]
    assert len(select(devices, ["all"])) == 3
    with pytest.raises(BadInput, match=r"not present.*cuda:0, cuda:1"):
        select(devices, ["cuda:7"])
    with pytest.raises(BadInput, match="not a device kind"):
        select(devices, ["tpu"])
    with pytest.raises(BadInput, match="not present"):
        select(devices, ["mps"])


def test_usable_cores_takes_the_smallest_limit() -> None:
    assert usable_cores(lambda: 8, lambda: 16, lambda: None) == (8, 8)
    assert usable_cores(lambda: 8, lambda: 4, lambda: None) == (4, 8)
    assert usable_cores(lambda: 8, lambda: 16, lambda: 2.5) == (2, 8)
    assert usable_cores(lambda: None, lambda: None, lambda: None)[0] >= 1


def test_cgroup_cpu_max(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None


def test_cpuinfo_parsing(tmp_path: Path) -> None:
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2 fma amx_bf16\n")
    assert cpu_model_name(f) == "Example CPU 9000"
    assert cpu_flags(f) == ("avx2", "fma", "amx_bf16")
    assert native_bf16(cpu_flags(f))
    assert not native_bf16(("avx2", "fma"))


def test_device_info_round_trips_to_dict() -> None:
    d = DeviceInfo(id="cpu", kind="cpu", name="x", memory_bytes=1, backend="cpu")
    assert d.to_dict()["id"] == "cpu"
