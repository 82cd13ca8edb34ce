"""The performance model: unit choice, roofline arithmetic, fitting, and the predict/validate commands."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

import dlgpu.predict
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.predict import Calibration, precision_reason, predict_step
from dlgpu.predict.calibration import load_calibration
from dlgpu.predict.fit import Sample, errors_pct, fit
from dlgpu.predict.roofline import unit_peak
from dlgpu.results import OpProfile, OpRecord

CAT = load_catalog()
DATA = Path(dlgpu.predict.__file__).parent / "data"
A100, V100, RTX4090 = CAT.gpu("a100-sxm4-80gb"), CAT.gpu("v100-sxm2-16gb"), CAT.gpu("rtx-4090")


def op(kind: str, dtype: str = "float32", flops: float = 1e12, nbytes: float = 1e6, count: int = 1) -> OpRecord:
    return OpRecord(op=kind, kind=kind, phase="forward", dtype=dtype, flops=flops, bytes_read=nbytes / 2,
                    bytes_written=nbytes / 2, count=count)


def prof(*ops: OpRecord, batch: int = 8) -> OpProfile:
    return OpProfile("w", "train", "fp32", batch, {}, 1, tuple(ops))


def test_units_follow_what_pytorch_does() -> None:
    # fp32 convolutions use TF32 on Ampere (cuDNN default); fp32 matmuls do not, unless precision is tf32.
    assert unit_peak(op("conv"), A100, "fp32") == ("tensor-tf32", A100.tf32_flops_per_s)
    assert unit_peak(op("matmul"), A100, "fp32") == ("vector", A100.fp32_flops_per_s)
    assert unit_peak(op("matmul"), A100, "tf32") == ("tensor-tf32", A100.tf32_flops_per_s)
    assert unit_peak(op("conv"), V100, "fp32") == ("vector", V100.fp32_flops_per_s)
    assert unit_peak(op("matmul", "bfloat16"), A100, "bf16") == ("tensor", A100.bf16_flops_per_s)
    # autocast fp16 accumulates in fp32: a GeForce card's half-rate figure applies.
    assert unit_peak(op("matmul", "float16"), RTX4090, "fp16") == ("tensor", RTX4090.fp16_fp32acc_flops_per_s)
    assert unit_peak(op("elementwise"), A100, "fp16") == ("vector", A100.fp32_flops_per_s)


def test_precisions_a_gpu_cannot_run() -> None:
    assert "8.0" in (precision_reason(V100, "bf16") or "")
    assert precision_reason(V100, "tf32")
    assert precision_reason(A100, "bf16") is None


def test_roofline_arithmetic() -> None:
    half = math.log(0.5)
    cal = Calibration({"tensor:conv": half, "vector:other": half, "mem": half, "kernel_s": math.log(1e-5),
                       "launch_s": math.log(1e-9)})
    # A compute-bound op at 50% efficiency plus one kernel's cost.
    p = prof(op("conv", flops=1e12, nbytes=1.0))
    got = predict_step(p, A100, "fp32", cal).step_time_s
    assert got == pytest.approx(1e12 / (A100.tf32_flops_per_s * 0.5) + 1e-5)
    # A memory-bound op: bytes over half the bandwidth.
    q = prof(op("elementwise", flops=1.0, nbytes=1e10))
    got = predict_step(q, A100, "fp32", cal)
    assert got.step_time_s == pytest.approx(1e10 / (A100.memory_bandwidth_bytes_per_s * 0.5) + 1e-5)
    assert got.bound["memory"] > 0.99
    # Many tiny kernels: the host's launch time bounds the step, not the device.
    slow_host = Calibration({**cal.values, "launch_s": math.log(1e-4)})
    tiny = prof(op("elementwise", flops=1.0, nbytes=1.0, count=1000))
    assert predict_step(tiny, A100, "fp32", slow_host).step_time_s == pytest.approx(1000 * 1e-4)


def test_fit_recovers_a_known_model() -> None:
    truth = Calibration({"tensor:conv": -0.3, "vector:matmul": -0.9, "vector:other": -1.2, "mem": -0.4,
                         "kernel_s": math.log(4e-6), "launch_s": math.log(2e-6)})
    samples = []
    for gpu in (A100, V100, RTX4090, CAT.gpu("t4"), CAT.gpu("h100-sxm5-80gb")):
        for i, scale in enumerate((1.0, 3.0, 0.2)):
            p = prof(op("conv", flops=2e11 * scale, count=50), op("matmul", flops=1e11 * scale, count=20),
                     op("elementwise", flops=1e6, nbytes=4e8 * scale, count=100), batch=8)
            sps = 8 / predict_step(p, gpu, "fp32", truth).step_time_s
            samples.append(Sample(f"{gpu.id}-{i}", "vision", p, gpu, "fp32", "pytorch", sps))
    cal = fit(samples)
    assert max(abs(e) for e in errors_pct(cal, samples)) < 2.0


def test_predict_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "resnet50", "--hardware", "a100-sxm4-80gb", "-b", "64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.predict/1" and doc["hardware"] == "a100-sxm4-80gb"
    assert doc["samples_per_s"] == pytest.approx(64 / doc["step_time_s"])
    assert doc["fits"] is True and doc["peak_mem_bytes"] > 25_557_032 * 12
    assert set(doc["bound"]) == {"compute", "memory", "overhead"}
    iv = doc["interval"]
    assert iv is not None and iv["low"] < doc["samples_per_s"] < iv["high"]


def test_prediction_holds_the_published_figures_within_its_documented_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    """ResNet-50 training on an A100 80GB SXM4 was published by two suites (published_calibration.csv): NVIDIA's
    DeepLearningExamples (TF32 and AMP fp16 at batch 256) and Lambda's 2022 table (fp32 in an NGC container, i.e.
    TF32, at 640; fp16 at 1280). They disagree with each other: 2470 against 1582 images/s in fp16. The model's
    documented error is its interval, the 10th-90th percentile of the leave-one-device-out errors in the shipped
    calibration (a band of about 2x from low to high): an 80% interval, so not every published figure lies in it,
    but most must, and the interval must be exactly that band around the prediction."""
    published = [r for r in csv.DictReader((DATA / "published_calibration.csv").read_text().splitlines())
                 if (r["workload"], r["task"], r["hardware"]) == ("resnet50", "train", "a100-sxm4-80gb")]
    assert len(published) == 4
    # held-out errors as a user's prediction is made (no benchmark suite's correction): what the interval uses
    held = sorted(r["user_error_pct"] / 100 for r in load_calibration().fit["leave_one_device_out"]["rows"])
    q = statistics.quantiles(held, n=10, method="inclusive")
    assert (1 + q[-1]) / (1 + q[0]) < 2.5  # the documented band is about 2x wide
    inside = 0
    for row in published:
        precision = "tf32" if row["precision"] == "fp32" else row["precision"]  # NGC containers: TF32
        assert main(["predict", "resnet50", "--hardware", "a100-sxm4-80gb", "-p", precision, "-b",
                     row["batch_size"], "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        sps, iv = doc["samples_per_s"], doc["interval"]
        assert iv["low"] == pytest.approx(sps / (1 + q[-1])) and iv["high"] == pytest.approx(sps / (1 + q[0]))
        inside += iv["low"] <= float(row["samples_per_s"]) <= iv["high"]
    assert inside >= len(published) // 2


@pytest.mark.parametrize(("argv", "needle"), [
    (["predict", "resnet50", "--hardware", "a100"], "unknown hardware 'a100'"),
    (["predict", "resnet50", "--hardware", "v100-sxm2-16gb", "-p", "bf16"], "--precision bf16"),
    (["predict", "nosuch", "--hardware", "t4"], "unknown workload"),
    (["predict", "resnet50", "--hardware", "t4", "-t", "decode"], "resnet50 does not support --task decode"),
])
def test_predict_bad_input(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and needle in err


def test_validate_reports_per_row_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "v.csv"
    f.write_text("workload,task,hardware,precision,batch_size,overrides,samples_per_s,framework,source_url\n"
                 "resnet50,infer,t4,fp16,64,,1000,pytorch,x\n"
                 "llama3_8b,decode,rtx-4090,fp16,1,context_len=1024,54,llama.cpp,x\n")
    assert main(["validate", str(f), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.validate/1" and doc["predicted"] == 1 and doc["unsupported"] == 1
    ok, bad = doc["rows"]
    assert ok["status"] == "ok" and ok["predicted_samples_per_s"] > 0
    assert ok["error_pct"] == pytest.approx(100 * (ok["predicted_samples_per_s"] - 1000) / 1000)
    assert bad["status"] == "unsupported" and bad["predicted_samples_per_s"] is None and bad["reason"]
    assert doc["median_abs_error_pct"] == pytest.approx(abs(ok["error_pct"]))


def test_power_budget_caps_sustained_flops() -> None:
    # Same datasheet peak, less power: the PCIe A100 (250 W) sustains less than the SXM one (400 W).
    pcie, sxm = CAT.gpu("a100-pcie-40gb"), CAT.gpu("a100-sxm4-40gb")
    assert pcie.bf16_flops_per_s == sxm.bf16_flops_per_s and pcie.tdp_w < sxm.tdp_w
    cal = Calibration({"power:tensor": math.log(1e12)})
    peak = sxm.bf16_flops_per_s
    assert cal.seconds_per_flop("tensor", peak, pcie.tdp_w) > cal.seconds_per_flop("tensor", peak, sxm.tdp_w)
    assert cal.seconds_per_flop("tensor", peak, sxm.tdp_w) == pytest.approx(1 / peak + 1 / (sxm.tdp_w * 1e12))
    assert Calibration({}).seconds_per_flop("tensor", peak, sxm.tdp_w) == pytest.approx(1 / peak)
