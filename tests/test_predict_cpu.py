"""Tracing with GPU dispatch semantics, predicting CPUs, and calibrating on what `dlgpu bench` measured."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch.utils.flop_counter as fc

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.analyze.gpu_semantics import FOREACH_CHUNK_ELEMENTS, FOREACH_MAX_BLOCKS, foreach_launches
from dlgpu.analyze.profiles import profile
from dlgpu.catalog import CpuSpec, LocalCpu, device_facts, load_catalog
from dlgpu.catalog.local import describe_local_cpu, estimated_bf16_peak
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.predict import Calibration, cpu_as_device, predict_step
from dlgpu.predict.calibration import bench_documents, bench_samples, load_calibration, source_stack
from dlgpu.predict.fit import Sample, errors_pct, fit
from dlgpu.predict.roofline import DENSE, op_group, op_unit
from dlgpu.predict.validate import memory_model_check
from dlgpu.results import DeviceInfo, memory_need, usable_memory_bytes

CAT = load_catalog()


def test_gpu_target_traces_fused_attention_in_the_autocast_dtype() -> None:
    # BERT-large at seq 128, batch 8: one fused kernel per layer and direction, in fp16 as CUDA autocast
    # runs it; the CPU target goes down the unfused math path (dropout in training) instead.
    gpu = api.analyze("bert_large", "train", "fp16", 8, {"seq_len": "128"}, target="gpu")
    cpu = api.analyze("bert_large", "train", "fp16", 8, {"seq_len": "128"}, target="cpu")
    fwd = [o for o in gpu.ops if o.op == "scaled_dot_product_attention"]
    bwd = [o for o in gpu.ops if o.op == "scaled_dot_product_attention_backward"]
    assert sum(o.count for o in fwd) == 24 and sum(o.count for o in bwd) == 24
    assert {o.dtype for o in fwd} == {"float16"} and {o.kind for o in fwd} == {"attention"}
    shape = (8, 16, 128, 64)
    assert fwd[0].flops == fc.sdpa_flop_count(shape, shape, shape) == 4 * 8 * 16 * 128 * 128 * 64
    # q, k, v (2 bytes each) and at most a padding mask (batch x seq x seq, one per sequence) read: no
    # tensor of heads x seq x seq.
    qkv = 3 * 8 * 16 * 128 * 64 * 2
    assert qkv <= fwd[0].bytes_read <= qkv + 8 * 128 * 128 * 4
    assert not [o for o in cpu.ops if o.op.startswith("scaled_dot_product_attention")]
    # Activations: the GPU keeps q, k, v and the output per layer, not the seq x seq probabilities.
    assert gpu.activation_bytes < cpu.activation_bytes
    # Same model FLOPs either way (the matmuls are the same), far fewer kernels on the GPU.
    assert gpu.flops == pytest.approx(cpu.flops, rel=0.02)
    assert gpu.kernels < cpu.kernels / 2


def test_gpu_target_uses_multi_tensor_optimizers() -> None:
    gpu = api.analyze("test_resnet", "train", "fp32", 2, target="gpu")
    cpu = api.analyze("test_resnet", "train", "fp32", 2, target="cpu")
    gpu_opt = [o for o in gpu.ops if o.phase == "optimizer"]
    cpu_opt = [o for o in cpu.ops if o.phase == "optimizer"]
    assert gpu_opt and all(o.op.startswith("_foreach_") for o in gpu_opt if o.kind == "optimizer")
    assert not any(o.op.startswith("_foreach_") for o in cpu_opt)
    assert sum(o.count for o in gpu_opt) < sum(o.count for o in cpu_opt)
    # Both update every parameter: read the gradient, the momentum buffer and the weight, write two of them
    # (the op sequences differ, so the totals do too).
    for opt in (gpu_opt, cpu_opt):
        assert sum(o.bytes * o.count for o in opt) >= 5 * 4 * gpu.parameters


def test_foreach_launches() -> None:
    assert foreach_launches(1, 10) == 1
    assert foreach_launches(200, 200) == math.ceil(200 / 64)
    big = FOREACH_CHUNK_ELEMENTS * FOREACH_MAX_BLOCKS * 10  # ten launches' worth of blocks
    assert foreach_launches(30, big) == 10


def test_source_stack() -> None:
    assert source_stack({"source_url": "https://github.com/NVIDIA/DeepLearningExamples/blob/x/README.md"}) \
        == "NVIDIA/DeepLearningExamples"
    assert source_stack({"source_url": "https://www.example.org/a/b"}) == "example.org"
    assert source_stack({}) == ""


def test_stack_scales_step_time() -> None:
    gpu = CAT.gpu("a100-sxm4-80gb")
    prof = api.analyze("test_resnet", "train", "fp32", 2)
    cal = Calibration({"stack:x/y": math.log(2.0)})
    base = predict_step(prof, gpu, "fp32", cal).step_time_s
    assert predict_step(prof, gpu, "fp32", cal, stack="x/y").step_time_s == pytest.approx(2 * base)
    assert predict_step(prof, gpu, "fp32", cal, stack="unknown/suite").step_time_s == pytest.approx(base)


def test_predict_this_cpu_and_a_catalog_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "resnet50", "--hardware", "local", "-b", "8", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["hardware"] == "local" and doc["samples_per_s"] > 0 and doc["fits"] is True
    assert "this machine's CPU" in doc["device_basis"] and "CPU" in doc["provenance"]
    cpus = sorted((c for c in CAT.cpus if c.fp32_flops_per_s and c.memory_bandwidth_bytes_per_s),
                  key=lambda c: c.fp32_flops_per_s or 0)
    slow, fast = cpus[0], cpus[-1]
    got = {}
    for c in (slow, fast):
        assert main(["predict", "resnet50", "--hardware", c.id, "-b", "8", "--json"]) == 0
        got[c.id] = json.loads(capsys.readouterr().out)
    assert got[fast.id]["samples_per_s"] > got[slow.id]["samples_per_s"]
    # each is the roofline of the CPU-traced profile on that catalog row with the shipped CPU calibration
    cal = load_calibration()
    prof = profile("resnet50", "train", "fp32", 8, {}, target="cpu")
    for c in (slow, fast):
        step = predict_step(prof, cpu_as_device(c), "fp32", cal).step_time_s
        assert got[c.id]["samples_per_s"] == pytest.approx(8 / step, rel=1e-9)
        assert got[c.id]["hardware_kind"] == "cpu" and "catalog CPU" in got[c.id]["device_basis"]
    assert got[fast.id]["fits"] is None  # a catalog CPU says nothing about the RAM it is paired with
    assert main(["predict", "resnet50", "--hardware", "local", "-p", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "fp32 and bf16" in err and len(err.strip().splitlines()) == 1


def test_cpu_device_uses_amx_peak_for_bf16_dense_ops() -> None:
    """A catalog CPU with AMX: every bf16 convolution and matmul is timed on its BF16 (AMX) peak, everything else
    on its FP32 vector peak, each operator exactly as the roofline's formula says."""
    amx = CAT.get("xeon-platinum-8480plus")
    assert isinstance(amx, CpuSpec) and amx.bf16_flops_per_s and amx.fp32_flops_per_s
    assert amx.bf16_flops_per_s == 16 * amx.fp32_flops_per_s  # 1024 vs 64 FLOP/cycle/core (cpus.csv)
    dev = cpu_as_device(amx)
    assert dev.kind == "cpu" and dev.bf16_flops_per_s == amx.bf16_flops_per_s
    assert dev.fp32_flops_per_s == amx.fp32_flops_per_s
    bw = amx.memory_bandwidth_bytes_per_s
    assert bw
    prof = api.analyze("resnet50", "train", "bf16", 8, target="cpu")
    cal = Calibration({})  # every efficiency 0.5: the peaks alone set the compute times
    pred = predict_step(prof, dev, "bf16", cal)
    matrix_flops = 0.0
    amx_bound = 0
    for op, unit, t in zip(prof.ops, pred.op_units, pred.op_seconds, strict=True):
        on_amx = op.kind in DENSE and op.dtype == "bfloat16"
        assert unit == ("cpu-matrix" if on_amx else "cpu-vector"), (op.op, op.dtype)
        peak = amx.bf16_flops_per_s if on_amx else amx.fp32_flops_per_s
        t_c = op.flops / (peak * cal.efficiency(unit, op_group(op), "cpu", op.phase))
        t_m = op.bytes / (bw * cal.memory_efficiency("cpu", op.kind))
        assert t == pytest.approx(max(t_c, t_m), rel=1e-9), op.op
        if on_amx:
            matrix_flops += op.flops * op.count
            amx_bound += t_c > t_m
    assert amx_bound > 0  # some convolutions are compute-bound even at the AMX peak: the peak sets their time
    assert pred.tensor_core_share == pytest.approx(matrix_flops / prof.flops)
    assert 0.9 < pred.tensor_core_share < 1  # nearly all of ResNet-50's FLOPs are dense
    # The same CPU without its AMX figure runs those operators on the FP32 peak, 16x lower: a slower step.
    no_amx = predict_step(prof, replace(dev, bf16_flops_per_s=None), "bf16", cal)
    assert set(no_amx.op_units) == {"cpu-matrix", "cpu-vector"}
    assert no_amx.step_time_s > pred.step_time_s


def test_an_amx_cpu_not_in_the_catalog_is_predicted_on_the_peak_mfu_uses() -> None:
    flags = ["sse2", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
    cpu = describe_local_cpu("Intel(R) Xeon(R) Processor", 2, flags, 2.6e9, catalog=CAT)
    assert isinstance(cpu, LocalCpu) and cpu.fp32_flops_per_s == pytest.approx(2 * 2.6e9 * 64)
    est = estimated_bf16_peak(cpu)
    assert est is not None and est[0] == pytest.approx(2 * 2.6e9 * 1024)
    facts = device_facts(DeviceInfo(id="cpu", kind="cpu", name=cpu.model_name, memory_bytes=None, backend="cpu",
                                    physical_cores=2, details={"flags": flags, "max_clock_hz": 2.6e9}), CAT)
    assert facts.peak("bf16")[0] == pytest.approx(est[0])  # MFU's bf16 peak: the AMX estimate
    dev = cpu_as_device(cpu)
    assert dev.fp32_flops_per_s == pytest.approx(cpu.fp32_flops_per_s)
    assert dev.bf16_flops_per_s == pytest.approx(est[0])  # the predictor's: the same AMX peak
    no_amx = describe_local_cpu("Intel(R) Xeon(R) Processor", 2, flags[:-1], 2.6e9, catalog=CAT)
    assert isinstance(no_amx, LocalCpu) and cpu_as_device(no_amx).bf16_flops_per_s is None


def test_cpu_bench_results_become_calibration_samples(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    api.bench(["test_resnet", "test_bert"], devices=["cpu"], precisions=["fp32"], tasks=["train", "infer"],
              quick=True, timing=TINY_BUDGET, save_to=out)
    docs = bench_documents([out])
    samples, skipped = bench_samples(docs, CAT, profile)
    assert not skipped and len(samples) == 4
    measured = {(r["workload"], r["task"]): r["samples_per_s"] for r in docs[0]["results"]}
    for s in samples:
        assert s.gpu.kind == "cpu" and s.profile.workload in ("test_resnet", "test_bert")
        assert s.measured_samples_per_s == measured[(s.profile.workload, s.profile.task)]
        assert not any(o.op.startswith("_foreach_") for o in s.profile.ops)  # traced as the CPU runs it
    # The CPU terms are identifiable from these four real profiles (two workloads x train and infer): rows with
    # the throughput a known calibration gives them are fitted back exactly. (The measured throughputs are not a
    # fixed point: two timed steps on a shared 2-core machine can time a train step faster than inference, which
    # no roofline reproduces; an error band on them only measured the machine's load.)
    truth = Calibration({"cpu-vector:conv": -1.0, "cpu-vector:other": -2.0, "cpu-vector:matmul": -0.5,
                         "cpu:phase:backward": -0.7, "cpu:phase:optimizer": -1.5, "cpu:mem": -0.7,
                         "cpu:op_s": math.log(2e-5)})
    known = [replace(s, measured_samples_per_s=s.profile.batch_size / predict_step(
        s.profile, s.gpu, s.precision, truth, s.framework, s.stack).step_time_s) for s in samples]
    assert max(abs(e) for e in errors_pct(fit(known), known)) < 0.1
    mem = memory_model_check(docs, profile)
    assert mem["n"] == 4 and mem["runtime_bytes"] > 0
    assert all(r["measured_bytes"] > 0 and r["model_bytes"] > 0 for r in mem["rows"])


def test_bench_documents_rejects_other_files(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text('{"schema": "dlgpu.predict/1"}')
    with pytest.raises(api.BadInput, match=r"dlgpu\.bench/1"):
        bench_documents([f])


def test_fit_recovers_known_cpu_parameters() -> None:
    dev = cpu_as_device(next(c for c in CAT.cpus if c.fp32_flops_per_s and c.memory_bandwidth_bytes_per_s))
    truth = Calibration({"cpu-vector:conv": -1.0, "cpu-vector:other": -2.0, "cpu-vector:matmul": -0.5,
                         "cpu:mem": -0.7, "cpu:op_s": math.log(2e-5)})
    samples = []
    for name, bs in (("test_resnet", 2), ("test_resnet", 8), ("test_bert", 2), ("test_bert", 8), ("test_gpt", 4)):
        for task in ("train", "infer"):
            p = api.analyze(name, task, "fp32", bs, target="cpu")
            sps = bs / predict_step(p, dev, "fp32", truth).step_time_s
            samples.append(Sample(f"{name}-{task}-{bs}", "x", p, dev, "fp32", "pytorch", sps))
    cal = fit(samples)
    assert max(abs(e) for e in errors_pct(cal, samples)) < 3.0


@pytest.mark.parametrize(("workload", "task", "overrides"), [
    ("resnet50", "train", {}), ("bert_large", "train", {"seq_len": "384"}), ("gpt2_large", "decode", {})])
def test_largest_batch_that_fits(workload: str, task: str, overrides: dict) -> None:
    memory = 24 * 2**30
    b = api.largest_batch(workload, task, "fp16", memory, overrides)
    assert b > 1
    # Exact: the trace at b fits and the one at b + 1 does not.
    assert memory_need(api.analyze(workload, task, "fp16", b, overrides)) <= memory
    over = b + 1
    assert memory_need(api.analyze(workload, task, "fp16", over, overrides)) > memory
    assert api.largest_batch(workload, task, "fp16", 2**20, overrides) == 0  # 1 MiB: not even batch 1


def test_a_model_that_cannot_train_on_one_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """ResNet at 16 px reaches a 1x1 feature map, where BatchNorm cannot train on one sample: batch 1 is refused
    in one line naming why, and the largest batch is searched from 2."""
    small = {"image_size": "16"}
    with pytest.raises(BadInput, match=r"batch 1 .*Expected more than 1 value per channel"):
        api.analyze("test_resnet", "train", "fp32", 1, small)
    b = api.largest_batch("test_resnet", "train", "fp32", 2**30, small)
    assert b > 2
    assert memory_need(api.analyze("test_resnet", "train", "fp32", b, small)) <= 2**30
    assert memory_need(api.analyze("test_resnet", "train", "fp32", b + 1, small)) > 2**30
    assert main(["analyze", "test_resnet", "--set", "image_size=16", "-b", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot run a train step at batch 1" in err and len(err.strip().splitlines()) == 1


def test_analyze_cli_largest_batch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "bert_large", "-p", "fp16", "--set", "seq_len=384", "-H", "rtx-3090", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    fit = doc["largest_batch"]
    assert fit["memory_of"] == "rtx-3090" and fit["memory_bytes"] == CAT.gpu("rtx-3090").memory_bytes
    # searched in the GPU's usable memory: its memory less the runtime's reserve, as bench plans and advise counts
    assert fit["usable_memory_bytes"] == usable_memory_bytes(fit["memory_bytes"]) < fit["memory_bytes"]
    assert fit["batch_size"] == api.largest_batch("bert_large", "train", "fp16", fit["usable_memory_bytes"],
                                                  {"seq_len": "384"})
    assert doc["memory_need_bytes"] > doc["state_bytes"] + doc["activation_bytes"]
    units = {(o["kind"], o["unit"]) for o in doc["ops"]}
    assert ("matmul", "tensor") in units and ("elementwise", "tensor") not in units
    assert op_unit("conv", "float32", "fp32") == "tensor-tf32"
    assert op_unit("matmul", "float32", "fp32") == "vector"
    assert main(["analyze", "resnet50", "--memory", "12x"]) == 2
    err = capsys.readouterr().err
    assert "--memory 12x" in err and len(err.strip().splitlines()) == 1


def test_parse_bytes() -> None:
    from dlgpu.units import parse_bytes

    assert parse_bytes("80GB") == 80 * 10**9 and parse_bytes("24GiB") == parse_bytes("24g") == 24 * 2**30
    assert parse_bytes("1000") == 1000 and parse_bytes("1.5 MiB") == 3 * 2**19
    for bad in ("", "GB", "-1GB", "0", "12x"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
