"""The shape-aware parts of the performance model: GEMM shapes in the trace, wave and tile quantization over the
SMs, L2-resident operators, host dispatch per generation, physical bounds of the fit, what a source's benchmark
timed (NVIDIA's SSD inference without detections) and the software stack by version."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dlgpu.analyze.profiles import profile
from dlgpu.catalog import load_catalog
from dlgpu.devices import detect
from dlgpu.measure.harness import build
from dlgpu.predict.calibration import CALIBRATION_FILE, source_settings, source_stack
from dlgpu.predict.fit import bounds
from dlgpu.predict.forecast import stack_statement
from dlgpu.predict.rescale import rescale
from dlgpu.predict.roofline import Calibration, fits_l2, gemm_utilization, overhead_terms, predict_step
from dlgpu.results import OpProfile, OpRecord
from dlgpu.workloads.registry import get_workload

A100 = load_catalog().gpu("a100-sxm4-80gb")  # 108 SMs, 40 MiB of L2


# --- GEMM shapes in the trace -------------------------------------------------------------------------------------

def test_traced_gemms_carry_the_shape_their_flops_come_from() -> None:
    conv = profile("test_resnet", "train", "fp32", 4, {"image_size": "32", "num_classes": "10"})
    fwd = [o for o in conv.ops if o.kind == "conv" and o.phase == "forward"]
    bwd = [o for o in conv.ops if o.kind == "conv" and o.phase == "backward"]
    assert fwd and bwd and all(o.gemm is not None for o in fwd + bwd)
    for o in fwd:  # implicit GEMM: 2 x groups x output pixels x output channels x (input channels x kernel area)
        b, m, n, k = o.gemm  # type: ignore[misc]
        assert o.flops == 2 * b * m * n * k and m % 4 == 0  # the batch's pixels
    for o in bwd:  # both gradients, each a GEMM of the forward's size
        b, m, n, k = o.gemm  # type: ignore[misc]
        assert o.flops == pytest.approx(4 * b * m * n * k, rel=0.01) or o.flops == pytest.approx(2 * b * m * n * k)
    gpt = profile("test_gpt", "train", "fp16", 2)
    mm = [o for o in gpt.ops if o.kind == "matmul" and o.op in ("mm", "addmm", "bmm")]
    assert mm and all(o.flops == 2 * math.prod(o.gemm) for o in mm)  # type: ignore[arg-type]
    att = [o for o in gpt.ops if o.kind == "attention"]
    assert att and all(o.gemm is not None and o.gemm[0] % 2 == 0 for o in att)  # batch x heads
    assert all(o.gemm is None for o in gpt.ops if o.kind not in ("matmul", "conv", "attention"))


def test_a_rescaled_profile_rescales_the_batch_dimension_of_its_gemms() -> None:
    p = profile("test_gpt", "train", "fp32", 4)
    half = rescale(p, 2)
    for a, b in zip(p.ops, half.ops, strict=True):
        if a.gemm is not None and a.phase == "forward" and a.op in ("mm", "addmm"):
            assert b.gemm is not None and b.gemm[1] * 2 == a.gemm[1] and b.gemm[2:] == a.gemm[2:]


# --- waves and tiles ----------------------------------------------------------------------------------------------

def test_gemm_utilization_counts_waves_and_padding() -> None:
    # 108 tiles of 128x128 on 108 SMs: one full wave
    assert gemm_utilization((1, 128 * 108, 128, 64), "tensor", 108) == pytest.approx(1.0)
    # one tile more: a second wave with one tile in it, half the slots idle
    assert gemm_utilization((1, 128 * 109, 128, 64), "tensor", 108) == pytest.approx(109 / 216)
    # padding: 130 rows take two 64-row tiles (the smallest, since even those do not fill 108 SMs)
    assert gemm_utilization((1, 130, 64, 64), "tensor", 108) == pytest.approx(130 * 64 / (108 * 64 * 64))
    # big GEMMs keep every SM busy, whatever the shape's remainder
    assert gemm_utilization((1, 200_000, 2048, 512), "tensor", 108) > 0.98
    # no shape, no SM count or a CPU: no quantization
    assert gemm_utilization(None, "tensor", 108) == 1.0
    assert gemm_utilization((1, 128, 128, 64), "tensor", None) == 1.0
    assert gemm_utilization((1, 128, 128, 64), "cpu-vector", 8) == 1.0


def _one_op(gemm: tuple[int, int, int, int], dtype: str = "float16", kind: str = "matmul") -> OpProfile:
    b, m, n, k = gemm
    op = OpRecord(op="mm", kind=kind, phase="forward", dtype=dtype, flops=2.0 * b * m * n * k,
                  bytes_read=2.0 * b * (m * k + k * n), bytes_written=2.0 * b * m * n, count=1, gemm=gemm)
    return OpProfile("x", "infer", "fp16", 1, {}, 0, (op,))


def test_a_partial_wave_costs_time_by_the_fitted_exponent() -> None:
    # 12 x 9 tiles of 128x128 on 108 SMs, then 13 x 9 = 117: a second wave with 9 tiles in it
    full, spill = _one_op((1, 128 * 12, 128 * 9, 4096)), _one_op((1, 128 * 13, 128 * 9, 4096))
    base = {"tensor:matmul": math.log(0.8), "mem": 0.0, "kernel_s": math.log(1e-12), "launch_s": math.log(1e-12)}
    flops_ratio, idle = 13 / 12, 216 / 117
    for alpha, expected in ((None, flops_ratio), (1.0, flops_ratio * idle), (0.5, flops_ratio * idle ** 0.5)):
        values = dict(base) if alpha is None else {**base, "shape:alpha": math.log(alpha)}
        cal = Calibration(values)
        t_full = predict_step(full, A100, "fp16", cal)
        t_spill = predict_step(spill, A100, "fp16", cal)
        assert t_full.compute_s > 0 and t_spill.step_time_s / t_full.step_time_s == pytest.approx(expected, rel=1e-6)


def test_an_operator_that_fits_in_l2_streams_at_the_fitted_l2_rate() -> None:
    def add(elements: int) -> OpProfile:
        op = OpRecord(op="add", kind="elementwise", phase="forward", dtype="float32", flops=float(elements),
                      bytes_read=8.0 * elements, bytes_written=4.0 * elements, count=1)
        return OpProfile("x", "infer", "fp32", 1, {}, 0, (op,))

    small, large = add(1 << 20), add(1 << 24)  # 12 MiB and 192 MiB of traffic, against 40 MiB of L2
    assert fits_l2(small.ops[0], A100) and not fits_l2(large.ops[0], A100)
    values = {"mem": math.log(0.8), "kernel_s": math.log(1e-12), "launch_s": math.log(1e-12)}
    plain = Calibration(values)
    cached = Calibration({**values, "l2:hit": math.log(2.0)})
    assert predict_step(small, A100, "fp32", cached).memory_s == pytest.approx(
        predict_step(small, A100, "fp32", plain).memory_s / 2)
    assert predict_step(large, A100, "fp32", cached).memory_s == pytest.approx(
        predict_step(large, A100, "fp32", plain).memory_s)


def test_host_dispatch_has_an_offset_per_generation() -> None:
    assert overhead_terms("cpu") == ("cpu:op_s", ())
    assert overhead_terms("volta-turing") == ("kernel_s", ("launch_s", "launch:volta-turing"))
    tiny = _one_op((1, 1, 64, 64))
    v100 = load_catalog().gpu("v100-sxm2-16gb")
    values = {"launch_s": math.log(1e-5), "kernel_s": math.log(1e-12)}
    slow_host = Calibration({**values, "launch:volta-turing": math.log(3.0)})
    assert predict_step(tiny, v100, "fp16", slow_host).step_time_s == pytest.approx(3e-5)
    assert predict_step(tiny, A100, "fp16", slow_host).step_time_s == pytest.approx(1e-5)  # another generation


# --- the fit stays physical ---------------------------------------------------------------------------------------

def test_the_shipped_calibration_lies_within_the_physical_bounds() -> None:
    values = json.loads(CALIBRATION_FILE.read_text())["values"]
    names = sorted(values)
    lo, hi = bounds(names)
    outside = [n for n, a, b in zip(names, lo, hi, strict=True) if not a - 1e-6 <= values[n] <= b + 1e-6]
    assert not outside
    # and the bounds are real ones: efficiency bases at most 2x peak, CPU phases within 8x, alpha at most 1
    checked = dict(zip(names, zip(lo, hi, strict=True), strict=True))
    assert checked["tensor:matmul"][1] == pytest.approx(math.log(2.0))
    assert checked["cpu:phase:optimizer"] == pytest.approx((-math.log(8.0), math.log(8.0)))
    assert checked["shape:alpha"][1] == 0.0
    assert "cpu:phase:forward" not in values  # the forward is the reference


# --- what a source timed ------------------------------------------------------------------------------------------

DLE_SSD = "https://github.com/NVIDIA/DeepLearningExamples/blob/729963dd47e7c8bd462ad10bfac7a7b0b604e6dd/PyTorch/Detection/SSD/README.md"


def test_nvidia_ssd_inference_rows_are_calibrated_without_detections() -> None:
    assert source_settings({"source_url": DLE_SSD, "workload": "ssd300", "task": "infer"}) == {"detections": "false"}
    assert source_settings({"source_url": DLE_SSD, "workload": "ssd300", "task": "train"}) == {}
    assert source_settings({"source_url": "https://github.com/lambdal/x", "workload": "ssd300", "task": "infer"}) == {}


def test_ssd_inference_without_detections_runs_the_network_only() -> None:
    spec = get_workload("test_ssd")
    cpu = detect()[0][0]
    outputs = {}
    for det in ("true", "false"):
        built = build(spec, spec.resolve({"detections": det}), cpu)
        inst = built.instance
        inst.train(False)
        torch.manual_seed(0)
        batch = inst.make_batch(2, torch.device("cpu"))
        with torch.no_grad():
            outputs[det] = inst.forward(batch)
    assert isinstance(outputs["true"], list) and {"boxes", "scores", "labels"} <= set(outputs["true"][0])
    raw = outputs["false"]
    assert set(raw) == {"bbox_regression", "cls_logits"}
    assert raw["bbox_regression"].shape[0] == 2 and raw["bbox_regression"].shape[2] == 4
    assert raw["cls_logits"].shape[:2] == raw["bbox_regression"].shape[:2] and raw["cls_logits"].shape[2] == 5
    with_nms = profile("test_ssd", "infer", "fp32", 2, {"detections": "true"})
    network = profile("test_ssd", "infer", "fp32", 2, {"detections": "false"})
    assert any(o.op == "nms" for o in with_nms.ops) and not any(o.op == "nms" for o in network.ops)
    assert network.kernels < with_nms.kernels / 3
    # the convolutions are the same network's
    convs = lambda p: sorted((o.gemm, o.count) for o in p.ops if o.kind == "conv")  # noqa: E731
    assert convs(network) == convs(with_nms)


# --- the software stack -------------------------------------------------------------------------------------------

def test_the_stack_is_the_suite_and_its_version() -> None:
    old = "https://github.com/lambdal/deeplearning-benchmark/blob/aa5addb6a53675a649a80036dad548f1c27cbcc4/pytorch/a.csv"
    new = "https://github.com/lambdal/deeplearning-benchmark/blob/fe450482b982f1790e05e0bd57724a3f692b2d0f/pytorch/a.csv"
    assert source_stack({"source_url": old}) == "lambdal/deeplearning-benchmark@aa5addb"
    assert source_stack({"source_url": new}) == "lambdal/deeplearning-benchmark@fe45048"
    assert source_stack({"source_url": "https://github.com/owner/repo"}) == "owner/repo"
    assert source_stack({"source_url": "https://mlcommons.org/results"}) == "mlcommons.org"
    cal = Calibration({"stack:a@1": math.log(0.9), "stack:b": math.log(1.2), "stack:dlgpu-bench": 0.0})
    said = stack_statement(cal)
    assert "2 calibrated software stacks" in said and "0.90x, a@1" in said and "1.20x, b" in said


# --- what fp32 meant ----------------------------------------------------------------------------------------------

def test_fp32_means_what_the_framework_and_generation_made_of_it() -> None:
    from dlgpu.predict.calibration import measured_precision

    cat = load_catalog()
    a100, v100 = cat.gpu("a100-pcie-40gb"), cat.gpu("v100-sxm2-32gb")
    tf = {"precision": "fp32", "framework": "tensorflow", "source_url": "https://github.com/LambdaColdStorage/x"}
    ngc = {"precision": "fp32", "framework": "pytorch", "source_url": DLE_SSD}
    plain = {"precision": "fp32", "framework": "pytorch", "source_url": "https://github.com/sitar-lab/NeuSight"}
    assert measured_precision(tf, a100)[0] == "tf32" and measured_precision(tf, v100)[0] == "fp32"
    assert measured_precision(ngc, a100)[0] == "tf32" and measured_precision(ngc, v100)[0] == "fp32"
    assert measured_precision(plain, a100)[0] == "fp32"
    assert measured_precision({**tf, "precision": "fp16"}, a100)[0] == "fp16"


def test_suites_that_disagree_set_a_floor_under_a_one_stack_prediction() -> None:
    from dlgpu.predict.calibration import source_disagreement
    from dlgpu.predict.fit import Sample

    a100 = A100
    prof = OpProfile("resnet50", "train", "fp16", 256, {}, 0, ())

    def row(stack: str, sps: float, workload: str = "resnet50") -> Sample:
        return Sample(f"{stack} {sps}", "vision", OpProfile(workload, "train", "fp16", 256, {}, 0, ()), a100, "fp16",
                      "pytorch", sps, stack)

    rows = [row("NVIDIA/DLE@729963d", 2470), row("lambdal/bench@aa5addb", 1582), row("lambdal/bench@fe45048", 1500),
            row("NVIDIA/DLE@729963d", 900, "bert_large")]  # one suite only: no pair
    dis = source_disagreement(rows)
    assert list(dis["configurations"]) == ["resnet50 train a100-sxm4-80gb fp16"] and prof.batch_size == 256
    # each suite's best figure (Lambda's two versions are one suite): 2470 / 1582
    assert dis["median_ratio"] == pytest.approx(2470 / 1582)
    assert dis["median_floor_pct"] == pytest.approx(100 * (math.sqrt(2470 / 1582) - 1))
