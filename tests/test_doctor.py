"""``dlgpu doctor``: every check judged on fake facts (a GPU torch cannot use, an old driver, a card without tensor
cores, a dataset with no room, starved threads), the readers fed fakes through their seams (a fake NVML with two
GPUs, a fake torch, a cgroup quota and a PCI bus in temporary files, child probes), and the real run here."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from dlgpu.cli.main import main
from dlgpu.doctor import checks, judge
from dlgpu.doctor.facts import Cpu, Facts, Framework, Gpu, Host, Nvml, Torch, Workload, tensor_core_precisions
from dlgpu.doctor.frameworks import MARK, run_probes, torch_facts, torch_from_dict
from dlgpu.doctor.gather import (
    cgroup_cpu_quota,
    cgroup_memory_limit,
    cpu_facts,
    nvml_facts,
    pci_gpus,
    workload_facts,
)
from fakes import fake_cuda_torch

GIB = 2**30
A100 = Gpu(index=0, name="NVIDIA A100-SXM4-80GB", vendor="nvidia", source="nvml", memory_bytes=80 * GIB,
           compute_capability="8.0")
GTX1080 = Gpu(index=0, name="NVIDIA GeForce GTX 1080", vendor="nvidia", source="nvml", memory_bytes=8 * GIB,
              compute_capability="6.1")
V100 = Gpu(index=0, name="Tesla V100-SXM2-16GB", vendor="nvidia", source="nvml", memory_bytes=16 * GIB,
           compute_capability="7.0")


def good(**changes: Any) -> Facts:
    """A machine set up right: a CUDA 12.4 torch using an A100 whose driver supports CUDA 12.4, 8 threads on 8
    usable cores, room for anything."""
    torch = Torch(installed=True, version="2.5.1+cu124", cuda="12.4", cudnn=90100, cuda_available=True,
                  gpus=(dataclasses.replace(A100, source="torch"),), arch_list=("sm_80", "sm_90"),
                  mps_built=False, mps_available=False, xpu_available=False, mkldnn=True, num_threads=8)
    facts = Facts(
        torch=torch,
        nvml=Nvml(available=True, driver_version="550.54.15", cuda_driver_version="12.4", gpus=(A100,)),
        cpu=Cpu(model="AMD EPYC 7742", flags=("avx", "avx2", "fma"), physical_cores=8, logical_cores=16,
                affinity_cores=16, cgroup_cpus=None, cgroup_source=None, usable_cores=8),
        host=Host(ram_total_bytes=512 * GIB, ram_available_bytes=500 * GIB, ram_cgroup_limit_bytes=None,
                  data_dir="/data", disk_path="/data", disk_free_bytes=2000 * GIB, disk_total_bytes=4000 * GIB),
        pci_gpus=(Gpu(index=0, name="NVIDIA PCI device 10de:20b2", vendor="nvidia", source="pci"),),
        env={"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None, "CUDA_VISIBLE_DEVICES": None},
    )
    return dataclasses.replace(facts, **changes)


def by_name(facts: Facts) -> dict[str, checks.Check]:
    return {c.name: c for c in judge(facts).checks}


def with_torch(facts: Facts, **changes: Any) -> Facts:
    return dataclasses.replace(facts, torch=dataclasses.replace(facts.torch, **changes))


# --- the checks on fake facts -------------------------------------------------------------------------------------


def test_all_good_passes_and_exits_0() -> None:
    d = judge(good())
    assert d.ok and d.exit_code == 0
    statuses = {c.name: c.status for c in d.checks}
    assert statuses == {"pytorch": "pass", "torch uses the GPU": "pass", "driver supports torch's CUDA": "pass",
                        "torch has kernels for the GPU": "pass", "fp16 on tensor cores": "pass",
                        "cpu threads": "pass", "room for the dataset": "skip", "other frameworks": "pass"}
    doc = d.to_dict()
    assert doc["schema"] == "dlgpu.doctor/1" and doc["exit_code"] == 0
    assert doc["gpus"][0]["tensor_core_precisions"] == ["fp16", "int8", "bf16", "tf32"]
    assert doc["frameworks"]["pytorch"]["cudnn_text"] == "9.1.0"
    json.dumps(doc, allow_nan=False)


def test_gpu_present_but_cpu_only_torch_fails_with_the_pip_fix() -> None:
    f = with_torch(good(), version="2.5.1+cpu", cuda=None, cuda_available=False, gpus=(), arch_list=())
    c = by_name(f)["torch uses the GPU"]
    assert c.status == "fail" and "CPU-only build" in c.found and "A100" in c.found
    assert "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cu" in c.fix
    assert "at most 12.4" in c.fix  # the driver's CUDA bounds the wheel
    assert judge(f).exit_code == 1
    # found on the PCI bus alone (no driver, no NVML): still a GPU torch cannot use, and the driver check fails
    bare = dataclasses.replace(f, nvml=Nvml(available=False, reason="no NVIDIA driver here"))
    assert by_name(bare)["torch uses the GPU"].status == "fail"
    assert "install the NVIDIA driver first" in by_name(bare)["torch uses the GPU"].fix
    assert by_name(bare)["driver supports torch's CUDA"].status == "fail"


def test_cuda_torch_without_a_driver_or_with_gpus_hidden() -> None:
    base = with_torch(good(), cuda_available=False, gpus=(), cuda_reason="Found no NVIDIA driver")
    no_driver = dataclasses.replace(base, nvml=Nvml(available=False, reason="no NVIDIA driver here"))
    c = by_name(no_driver)["torch uses the GPU"]
    assert c.status == "fail" and "install the NVIDIA driver for CUDA 12.4" in c.fix
    hidden = dataclasses.replace(base, env={**base.env, "CUDA_VISIBLE_DEVICES": ""})
    c = by_name(hidden)["torch uses the GPU"]
    assert c.status == "fail" and "unset CUDA_VISIBLE_DEVICES" in c.fix


def test_amd_gpu_with_a_cuda_torch_fails() -> None:
    amd = Gpu(index=0, name="AMD PCI device 1002:740f", vendor="amd", source="pci")
    f = good(pci_gpus=(amd,), nvml=Nvml(available=False, reason="no NVIDIA driver here"))
    f = with_torch(f, cuda_available=False, gpus=())
    c = by_name(f)["torch uses the GPU"]
    assert c.status == "fail" and "whl/rocm" in c.fix
    assert by_name(f)["driver supports torch's CUDA"].status == "skip"


def test_no_gpu_at_all_passes() -> None:
    f = good(pci_gpus=(), nvml=Nvml(available=False, reason="no NVIDIA driver here"))
    f = with_torch(f, cuda_available=False, gpus=())
    d = by_name(f)
    assert d["torch uses the GPU"].status == "pass" and "no GPU here" in d["torch uses the GPU"].found
    assert d["driver supports torch's CUDA"].status == "skip"
    assert d["fp16 on tensor cores"].status == "skip"


@pytest.mark.parametrize(("driver", "status"), [("11.8", "fail"), ("12.2", "warn"), ("12.4", "pass"),
                                                ("12.8", "pass"), ("13.0", "pass")])
def test_driver_too_old_for_torchs_cuda(driver: str, status: str) -> None:
    f = good(nvml=Nvml(available=True, driver_version="520.61.05", cuda_driver_version=driver, gpus=(A100,)))
    c = by_name(f)["driver supports torch's CUDA"]
    assert c.status == status, c
    if status == "fail":
        assert "too old" in c.found and "upgrade the NVIDIA driver to one supporting CUDA 12.4" in c.fix
        assert judge(f).exit_code == 1
    if status == "warn":
        assert "minor version compatibility" in c.found


def test_fp16_on_a_card_without_tensor_cores_warns() -> None:
    f = good(nvml=Nvml(available=True, driver_version="535", cuda_driver_version="12.4", gpus=(GTX1080,)),
             torch=dataclasses.replace(good().torch, gpus=(GTX1080,), arch_list=("sm_61", "sm_80")))
    c = by_name(f)["fp16 on tensor cores"]
    assert c.status == "warn" and "no tensor cores" in c.found and "7.0 or newer" in c.fix
    assert judge(f).exit_code == 0  # a warning: it runs, slowly
    # bf16 on a Volta: dlgpu's precision rule says it cannot run (fail); tf32 on Volta too
    volta = dataclasses.replace(f, nvml=dataclasses.replace(f.nvml, gpus=(V100,)), precision="bf16")
    assert by_name(volta)["bf16 on tensor cores"].status == "fail"
    assert by_name(dataclasses.replace(volta, precision="fp16"))["fp16 on tensor cores"].status == "pass"
    assert by_name(dataclasses.replace(volta, precision="fp32"))["fp32 on tensor cores"].status == "pass"


def test_tensor_core_precisions_by_compute_capability() -> None:
    assert tensor_core_precisions("6.1") == ()
    assert tensor_core_precisions("7.0") == ("fp16",)
    assert tensor_core_precisions("7.5") == ("fp16", "int8")
    assert tensor_core_precisions("8.6") == ("fp16", "int8", "bf16", "tf32")
    assert tensor_core_precisions("8.9") == ("fp16", "int8", "bf16", "tf32", "fp8")
    assert tensor_core_precisions("10.0") == ("fp16", "int8", "bf16", "tf32", "fp8", "fp4")
    assert tensor_core_precisions(None) is None and tensor_core_precisions("gfx90a") is None


def test_build_without_kernels_for_the_gpu_fails() -> None:
    blackwell = Gpu(index=0, name="NVIDIA GeForce RTX 5090", vendor="nvidia", source="nvml", compute_capability="12.0")
    f = good(nvml=Nvml(available=True, driver_version="570", cuda_driver_version="12.8", gpus=(blackwell,)))
    f = with_torch(f, arch_list=("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"))
    c = by_name(f)["torch has kernels for the GPU"]
    assert c.status == "fail" and "12.0" in c.found
    assert checks._arch_covers(("sm_80",), (8, 6))  # same major, later minor
    assert not checks._arch_covers(("sm_86",), (8, 0))
    assert checks._arch_covers(("compute_90",), (12, 0))  # PTX is JIT-compiled forward
    assert not checks._arch_covers(("sm_90a",), (10, 0)) and checks._arch_covers(("sm_90a",), (9, 0))


def test_disk_and_ram_against_the_workloads_dataset() -> None:
    imagenet = Workload(name="resnet50", dataset="ImageNet-1k", dataset_bytes=148 * 10**9, source="test")
    small_disk = good(workload=imagenet, host=dataclasses.replace(good().host, disk_free_bytes=50 * GIB))
    c = by_name(small_disk)["room for the dataset"]
    assert c.status == "fail" and "--data-dir" in c.fix and judge(small_disk).exit_code == 1
    small_ram = good(workload=imagenet, host=dataclasses.replace(good().host, ram_total_bytes=64 * GIB,
                                                                 ram_available_bytes=60 * GIB))
    c = by_name(small_ram)["room for the dataset"]
    assert c.status == "warn" and "cannot cache it" in c.found
    capped = good(workload=imagenet, host=dataclasses.replace(good().host, ram_cgroup_limit_bytes=32 * GIB))
    assert by_name(capped)["room for the dataset"].status == "warn"  # a cgroup limit below the RAM counts
    assert by_name(good(workload=imagenet))["room for the dataset"].status == "pass"
    unknown = dataclasses.replace(imagenet, dataset_bytes=None)
    assert by_name(good(workload=unknown))["room for the dataset"].status == "skip"


def test_workload_facts_come_from_the_registry() -> None:
    w = workload_facts("resnet50")
    assert w.dataset_bytes == 147_897_477_120 and "ImageNet" in w.dataset
    assert main(["doctor", "-w", "no_such_workload", "--quick"]) == 2


@pytest.mark.parametrize(("env", "threads", "status"), [
    ({"OMP_NUM_THREADS": "1"}, 1, "fail"),  # one thread on two usable cores
    ({}, 1, "fail"),
    ({"OMP_NUM_THREADS": "2"}, 2, "pass"),
    ({"OMP_NUM_THREADS": "abc"}, 2, "warn"),
    ({"MKL_NUM_THREADS": "16"}, 2, "warn"),
    ({}, 8, "warn"),  # torch's default (the machine's physical cores) above a 2-CPU quota
])
def test_threads_against_usable_cores(env: dict[str, str], threads: int, status: str) -> None:
    cpu = dataclasses.replace(good().cpu, physical_cores=8, cgroup_cpus=2.0, cgroup_source="cpu.max", usable_cores=2)
    f = with_torch(good(cpu=cpu, env={"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None, **env}), num_threads=threads)
    c = by_name(f)["cpu threads"]
    assert c.status == status, c
    if status == "fail":
        assert "1 thread of 2 usable cores" in c.found and "torch.set_num_threads(2)" in c.fix


def test_retired_and_blind_frameworks_warn() -> None:
    fws = (Framework("MXNet", "mxnet", True, "1.9.1", retired=True, note="no longer maintained upstream: Attic"),
           Framework("JAX", "jax", True, "0.4.30", accelerators=()),
           Framework("TensorFlow", "tensorflow", True, "2.17.0", accelerators=("GPU:/physical_device:GPU:0",)))
    c = by_name(good(frameworks=fws))["other frameworks"]
    assert c.status == "warn" and "MXNet 1.9.1: no longer maintained upstream" in c.found
    assert "JAX 0.4.30 sees no GPU" in c.found and "jax[cuda12]" in c.fix
    assert "TensorFlow 2.17.0: GPU:/physical_device:GPU:0" in c.found


def test_broken_or_missing_torch_fails() -> None:
    assert by_name(good(torch=Torch(installed=False)))["pytorch"].status == "fail"
    broken = Torch(installed=True, version="2.5.1", error="ImportError: libcudnn.so.9: cannot open shared object file")
    c = by_name(good(torch=broken))["pytorch"]
    assert c.status == "fail" and "libcudnn" in c.found
    assert by_name(good(torch=broken))["torch uses the GPU"].status == "skip"


# --- the readers through their seams -------------------------------------------------------------------------------


class FakeNvml:
    """The pynvml functions ``nvml_facts`` calls, for two GPUs."""

    class NVMLError_LibraryNotFound(Exception):  # pynvml's name
        pass

    def __init__(self, missing: bool = False) -> None:
        self.missing = missing
        self.shutdowns = 0
        self.gpus = [("NVIDIA H100 80GB HBM3", 85_520_809_984, (9, 0)), ("NVIDIA L4", 24_152_899_584, (8, 9))]

    def nvmlInit(self) -> None:
        if self.missing:
            raise self.NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h][0]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return types.SimpleNamespace(total=self.gpus[h][1], used=0, free=self.gpus[h][1])

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return self.gpus[h][2]

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        raise RuntimeError("not supported")  # a failed read leaves that field empty


def test_fake_nvml_reports_two_gpus() -> None:
    fake = FakeNvml()
    n = nvml_facts(fake)
    assert n.available and n.driver_version == "550.54.15" and n.cuda_driver_version == "12.4"
    assert [(g.name, g.compute_capability, g.memory_bytes) for g in n.gpus] == [
        ("NVIDIA H100 80GB HBM3", "9.0", 85_520_809_984), ("NVIDIA L4", "8.9", 24_152_899_584)]
    assert n.gpus[1].tensor_cores == ("fp16", "int8", "bf16", "tf32", "fp8") and fake.shutdowns == 1
    f = good(nvml=n)
    doc = judge(f).to_dict()
    assert [g["name"] for g in doc["gpus"]] == ["NVIDIA H100 80GB HBM3", "NVIDIA L4"]
    assert doc["nvml"]["cuda_driver_version"] == "12.4"
    missing = nvml_facts(FakeNvml(missing=True))
    assert not missing.available and "no NVIDIA driver" in (missing.reason or "")


def test_torch_facts_from_a_fake_torch() -> None:
    props = [{"name": "NVIDIA A10G", "total_memory": 24 * GIB, "major": 8, "minor": 6, "multi_processor_count": 80,
              "uuid": "abc"}]
    fake = fake_cuda_torch(props)
    fake.__version__ = "2.5.1+cu124"
    fake.get_num_threads = lambda: 4
    fake.cuda.get_arch_list = lambda: ["sm_80", "sm_86"]
    t = torch_facts(fake)
    assert t.installed and t.cuda == "12.4" and t.build == "cuda" and t.cuda_available and t.num_threads == 4
    assert [(g.name, g.compute_capability, g.vendor) for g in t.gpus] == [("NVIDIA A10G", "8.6", "nvidia")]
    assert t.arch_list == ("sm_80", "sm_86") and t.cudnn is None  # the fake has no cudnn: None, not a crash
    assert torch_from_dict(json.loads(json.dumps(t.to_dict()))) == t  # what the child prints, read back
    rocm = torch_facts(fake_cuda_torch([{**props[0], "name": "AMD Instinct MI250X", "gcnArchName": "gfx90a"}],
                                       hip="6.0"))
    assert rocm.build == "rocm" and rocm.gpus[0].vendor == "amd" and rocm.gpus[0].tensor_cores is None


def test_cgroup_cpu_quota_from_fake_files(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/job/task\n")
    root = tmp_path / "cg"
    (root / "job" / "task").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")
    (root / "job" / "cpu.max").write_text("150000 100000\n")  # a parent's limit applies to its children
    (root / "job" / "task" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, proc) == (1.5, str(root / "job" / "cpu.max"))
    (root / "job" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, proc) == (None, None)
    # cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us; -1 is unlimited
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    proc.write_text("4:memory:/\n1:cpu,cpuacct:/\n0::/\n")
    assert cgroup_cpu_quota(v1, proc)[0] == 2.5
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1, proc) == (None, None)
    # the quota bounds the usable cores (rounded down)
    cpu = cpu_facts(physical=lambda: 8, logical=lambda: 16, affinity=lambda: 16,
                    quota=lambda: (1.5, "cpu.max"))
    assert cpu.usable_cores == 1 and cpu.cgroup_cpus == 1.5
    # memory: v2 memory.max, v1's "unlimited" page-counter maximum reads as no limit
    (root / "job" / "memory.max").write_text(f"{8 * GIB}\n")
    proc.write_text("0::/job/task\n")
    assert cgroup_memory_limit(root, proc) == 8 * GIB
    (v1 / "memory").mkdir()
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_memory_limit(v1, tmp_path / "absent") is None


def test_pci_scan_finds_gpus_without_a_driver(tmp_path: Path) -> None:
    def dev(addr: str, vendor: str, device: str, cls: str) -> None:
        d = tmp_path / addr
        d.mkdir()
        for k, v in (("vendor", vendor), ("device", device), ("class", cls)):
            (d / k).write_text(v + "\n")

    dev("0000:00:02.0", "0x1a03", "0x2000", "0x030000")  # a BMC's VGA: not a compute GPU
    dev("0000:17:00.0", "0x10de", "0x2330", "0x030200")  # an NVIDIA 3D controller (H100)
    dev("0000:17:00.1", "0x10de", "0x22a3", "0x040300")  # its audio function
    dev("0000:65:00.0", "0x1002", "0x740f", "0x038000")  # an AMD accelerator
    found = pci_gpus(tmp_path)
    assert [(g.vendor, g.pci_address) for g in found] == [("nvidia", "0000:17:00.0"), ("amd", "0000:65:00.0")]
    assert pci_gpus(tmp_path / "absent") == ()


def test_child_probes_answer_fail_and_time_out() -> None:
    out = run_probes({
        "ok": f"print('noise'); print({MARK!r} + '{{\"version\": \"1.0\"}}')",
        "broken": "raise ImportError('libfoo.so: cannot open shared object file')",
        "slow": "import time; time.sleep(30)",
    }, timeout_s=3)
    assert out["ok"] == ({"version": "1.0"}, None)
    assert out["broken"][0] is None and "libfoo.so" in (out["broken"][1] or "")
    assert out["slow"][0] is None and "longer than 3 s" in (out["slow"][1] or "")


def test_cli_exit_codes_and_table_from_fake_facts(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import dlgpu.doctor.gather as gather

    facts = good()
    monkeypatch.setattr(gather, "gather", lambda **kw: dataclasses.replace(facts, precision=kw["precision"]))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA A100-SXM4-80GB" in out and "ready" in out and "fp16 on tensor cores" in out
    facts = with_torch(good(), cuda=None, cuda_available=False, gpus=())
    assert main(["doctor", "--json", "-p", "bf16"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 1 and doc["precision"] == "bf16"
    assert {c["name"]: c["status"] for c in doc["checks"]}["torch uses the GPU"] == "fail"


# --- the real run on this machine -----------------------------------------------------------------------------------


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


BLOCKED = """
import builtins, json, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):  # `import torch` raises; finding it (find_spec) still works
    if name.split(".")[0] in ("torch", "torchvision", "transformers"):
        raise ImportError(f"{name} is blocked in this process")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
from dlgpu.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "torch")
sys.stderr.write("@@heavy " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo (Linux)")
def test_real_run_here(tmp_path: Path) -> None:
    """``dlgpu doctor --json -w resnet50`` on this machine, in a process where `import torch` is blocked: dlgpu's
    own process never imports torch (the child that probes it does), and every figure is in the document."""
    proc = subprocess.run([sys.executable, "-c", BLOCKED, "doctor", "--json", "-w", "resnet50", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=300)
    tail = json.loads(re.findall(r"^@@heavy (.*)$", proc.stderr, flags=re.M)[-1])
    assert tail["heavy"] == [], "doctor imported torch in its own process"
    doc = json.loads(proc.stdout)  # exactly one JSON document
    assert doc["schema"] == "dlgpu.doctor/1"
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert set(statuses.values()) <= {"pass", "warn", "fail", "skip"}
    assert tail["code"] == doc["exit_code"] == (1 if "fail" in statuses.values() else 0)
    assert all(c["fix"] for c in doc["checks"] if c["status"] in ("warn", "fail"))
    # frameworks
    pt = doc["frameworks"]["pytorch"]
    import torch  # this test process may: the figures the child read must be torch's own

    assert pt["installed"] and pt["error"] is None and pt["version"] == torch.__version__
    assert pt["cuda"] == torch.version.cuda and pt["hip"] == getattr(torch.version, "hip", None)
    for key in ("cudnn", "cuda_available", "mps_available", "xpu_available", "num_threads", "arch_list"):
        assert key in pt
    assert pt["cuda_available"] == torch.cuda.is_available()
    assert {fw["name"] for fw in doc["frameworks"]["others"]} >= {"TensorFlow", "JAX", "Keras"}
    # GPUs and driver: every key even where there is none
    assert set(doc["nvml"]) == {"available", "reason", "driver_version", "cuda_driver_version", "gpus"}
    if not doc["nvml"]["available"]:
        assert doc["nvml"]["reason"]
    for g in doc["gpus"]:
        assert {"name", "memory_bytes", "compute_capability", "tensor_cores", "tensor_core_precisions"} <= set(g)
    # CPU: flags as /proc/cpuinfo has them, cores, SIMD
    cpu = doc["cpu"]
    have = _cpuinfo_flags()
    for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"):
        assert (flag in cpu["flags"]) == (flag in have), flag
    assert cpu["simd"]["avx512f"] == ("avx512f" in have) and cpu["simd"]["amx"] == ("amx_tile" in have)
    import os

    assert cpu["affinity_cores"] == len(os.sched_getaffinity(0))
    assert 1 <= cpu["usable_cores"] <= cpu["affinity_cores"] and cpu["physical_cores"] >= 1
    assert cpu["model"] and cpu["torch_threads"] == pt["num_threads"]
    # memory, disk where the data would live, OS
    assert doc["memory"]["total_bytes"] > 0 and doc["disk"]["data_dir"] == str(tmp_path / "data")
    assert doc["disk"]["measured_at"] == str(tmp_path) and doc["disk"]["free_bytes"] > 0
    assert doc["os"]["system"] and doc["os"]["python"]
    # the dataset check agrees with the disk it measured
    need = doc["workload"]["dataset_bytes"]
    assert statuses["room for the dataset"] == ("fail" if doc["disk"]["free_bytes"] < need else
                                                "warn" if doc["memory"]["usable_bytes"] < need else "pass")
