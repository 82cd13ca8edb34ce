"""LLM decode and prefill predicted for a named runtime (llama.cpp), calibrated on published rows: the model's
arithmetic, the fit recovering known efficiencies, the published fit/no-fit results, the shipped calibration's
held-out errors, and the command line (torch-free, one JSON document, one line and exit 2 on bad input)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.llm.architectures import get_arch
from dlgpu.llm.calibration import llm_samples, load_llm_calibration
from dlgpu.llm.memory import llm_memory
from dlgpu.llm.perf import LlmSample, decode_step_s, fit_llm, predicted_tok_s, prefill_s
from dlgpu.llm.published import load_published_llm
from dlgpu.llm.workload import llm_work, resolve_published_model
from dlgpu.results import usable_memory_bytes

CAT = load_catalog()


def test_a_decode_step_reads_the_active_weights_and_the_kv_cache() -> None:
    arch = get_arch("llama-3-8b")
    work = llm_work(arch, "q4_k_m")
    total, active = arch.param_counts()
    # one row of the untied input embedding is read per token, the rest of the active weights whole
    assert work.decode_bytes == pytest.approx(work.weight_bytes * (active - arch.vocab * arch.hidden) / total)
    assert work.kv_bytes_per_token == 128 * 1024  # 128 KiB per token at fp16 (LLM.md section 3)
    gpu = CAT.gpu("rtx-4090")
    bw = gpu.memory_bandwidth_bytes_per_s or 0
    t = decode_step_s(work, gpu, e_mem=0.5, floor_s=1e-4, e_compute=0.5, batch=1, context=1000)
    assert t == pytest.approx(32 * 1e-4 + (work.decode_bytes + 1000 * work.kv_bytes_per_token) / (bw * 0.5))
    # at batch 64 the step reads the weights once and 64 caches: far less than 64 times the time
    t64 = decode_step_s(work, gpu, 0.5, 1e-4, 0.5, batch=64, context=1000)
    assert t < t64 < 10 * t
    # prefill of a long prompt is compute bound
    p = prefill_s(work, gpu, 0.5, 1e-4, 0.3, prompt=4096)
    assert p > 4096 * work.flops_per_token / ((gpu.fp16_flops_per_s or 0) * 0.3)


def test_the_fit_recovers_known_efficiencies() -> None:
    truth = {"llama.cpp:cuda:mem": math.log(0.8), "llama.cpp:cuda:layer_s": math.log(8e-5),
             "llama.cpp:cuda:prefill": math.log(0.35), "llama.cpp:cuda:split_exponent": 0.25}
    samples = []
    for gpu_id in ("rtx-4090", "rtx-3090", "h100-sxm5-80gb", "a100-sxm4-80gb", "l40s"):
        for model in ("llama-3-8b", "llama-3-70b"):
            for phase, tokens in (("decode", 128), ("decode", 1024), ("prefill", 512)):
                for gpus in (1, 4):
                    work = llm_work(get_arch(model), "q4_k_m")
                    s = LlmSample(f"{model} {gpu_id}", "llama.cpp", CAT.gpu(gpu_id), work, phase, tokens, 1.0, gpus)
                    samples.append(LlmSample(s.label, s.runtime, s.gpu, s.work, phase, tokens,
                                             predicted_tok_s(s, truth), gpus))
    cal = fit_llm(samples, ridge=1e-6)
    for name, value in truth.items():
        assert cal.values[name] == pytest.approx(value, abs=0.02), name


def test_published_fit_and_no_fit_agree_with_the_memory_model() -> None:
    """Every llama.cpp row that ran fits its GPUs (a layer split adds their memory); every published OOM fails to."""
    checked = {"ok": 0, "OOM": 0}
    for r in load_published_llm():
        if r.runtime_family != "llama.cpp" or not r.catalog_id:
            continue
        gpu = CAT.gpu(r.catalog_id)
        mem = llm_memory(resolve_published_model(r.model), r.quant.lower(), "fp16", r.context_len or 512, 1)
        one = gpu.memory_bytes or 0
        capacity = r.num_gpus * (one if gpu.vendor.lower() == "apple" else usable_memory_bytes(one))
        assert (mem.total_bytes <= capacity) == (r.status == "ok"), (r.index, r.model, r.catalog_id, r.num_gpus)
        checked[r.status] += 1
    assert checked["ok"] >= 400 and checked["OOM"] >= 18


def test_the_shipped_calibration_reports_held_out_errors_per_phase() -> None:
    cal = load_llm_calibration()
    lodo = cal.fit["leave_one_device_out"]
    assert set(lodo["by_phase"]) == {"decode", "prefill"}
    assert cal.fit["rows_used"] >= 400 and len(cal.fit["devices"]) >= 15
    # decode, bandwidth bound, is the better predicted phase
    assert lodo["by_phase"]["decode"]["median_abs_error_pct"] < lodo["by_phase"]["prefill"]["median_abs_error_pct"]
    reasons = " ".join(s["reason"] for s in cal.fit["rows_skipped"])
    assert "state no prompt length" in reasons and "status OOM" in reasons
    # the shipped values are what a refit on the shipped rows gives
    samples, _ = llm_samples(load_published_llm(), CAT)
    refit = fit_llm(samples)
    assert refit.values and all(v == pytest.approx(cal.values[k], abs=1e-3) for k, v in refit.values.items())
    # serving: TensorRT-LLM's max-throughput tables, each GPU held out in turn
    serving = cal.fit["serving"]
    assert serving["rows_used"] >= 60 and len(serving["devices"]) >= 5
    assert serving["leave_one_device_out"]["overall"]["median_abs_error_pct"] < 25


def test_predict_an_llm_decode_on_a_gpu_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "llama3_8b", "--task", "decode", "-H", "rtx-4090", "--precision", "q4_k_m",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.llm-predict/1" and doc["runtime"] == "llama.cpp" and doc["model"] == "llama-3-8b"
    assert doc["source"] == "predicted" and "fitted to published llama.cpp rows" in doc["basis"]
    iv = doc["interval"]
    assert iv["low"] < doc["tokens_per_s_per_sequence"] < iv["high"]
    assert doc["tpot_ms"] == pytest.approx(1e3 / doc["tokens_per_s_per_sequence"])
    assert doc["memory"]["fits"] is True and doc["verify"].startswith("llama-bench -m llama-3-8b-q4_k_m.gguf -p 512")
    arch, usable = get_arch("llama-3-8b"), doc["memory"]["usable_bytes"]
    most = doc["memory"]["largest_concurrency"]
    assert llm_memory(arch, "q4_k_m", "fp16", 640, most).total_bytes <= usable
    assert llm_memory(arch, "q4_k_m", "fp16", 640, most + 1).total_bytes > usable
    assert doc["memory"]["largest_context"] == arch.max_context  # 8k tokens of one sequence fit 24 GB easily
    # a 70B model in 4-bit does not fit one 24 GB card: a result, not an error
    assert main(["predict", "llama-3-70b", "--task", "decode", "-H", "rtx-4090", "-p", "q4_k_m", "--json"]) == 0
    big = json.loads(capsys.readouterr().out)
    assert big["memory"]["fits"] is False and big["note"].startswith("does not fit: needs")


def test_the_llm_path_of_predict_does_not_import_torch() -> None:
    code = ("import sys, io, contextlib\nfrom dlgpu.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['predict', 'qwen3-30b-a3b', '--task', 'prefill', '-H', 'h100-sxm5-80gb', '-p', 'fp8',"
            " '--json', '--no-save'])\n"
            "assert rc == 0, rc\nassert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("argv", "needle"), [
    (["predict", "no-such-llm", "--task", "decode", "-H", "rtx-4090", "-p", "q4_k_m"], "no-such-llm"),
    (["predict", "llama-3-8b", "--task", "decode", "-H", "rtx-4090", "-p", "q4_k_m", "--set", "prompt=0"],
     "prompt=0"),
    (["predict", "llama-3-8b", "--task", "decode", "-H", "rtx-4090", "-p", "q4_k_m", "--set", "prompt=9000000"],
     "takes at most"),
    (["predict", "llama-3-8b", "--task", "decode", "-H", "rtx-4090", "-p", "q4_k_m", "--set", "kv=q3"], "q3"),
    (["predict", "llama-3-8b", "--task", "decode", "-H", "nosuch", "-p", "q4_k_m"], "nosuch"),
])
def test_llm_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_validate_takes_published_llm_files_row_by_row(tmp_path: pytest.TempPathFactory,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from dlgpu.llm.published import PUBLISHED_LLM_FILE

    lines = PUBLISHED_LLM_FILE.read_text().splitlines()
    header, body = lines[0], lines[1:]
    decode = next(x for x in body if "decode_tok_s" in x and "rtx-4090" in x)
    trt = next(x for x in body if "TensorRT-LLM" in x)
    unknown = decode.replace("Meta-Llama-3-8B", "Some-Private-LLM-9B")
    path = Path(str(tmp_path)) / "mine.csv"
    path.write_text("\n".join([header, decode, trt, unknown]) + "\n")
    assert main(["validate", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ok, other, bad = doc["rows"]
    assert ok["status"] == "ok" and ok["predicted_value"] > 0 and ok["metric"] == "decode_tok_s"
    assert ok["error_pct"] == pytest.approx(100 * (ok["predicted_value"] - ok["value"]) / ok["value"])
    assert other["status"] == "unsupported" and "not modelled yet" in other["reason"]
    assert bad["status"] == "error" and "Some-Private-LLM-9B" in bad["reason"]
    assert doc["predicted"] == 1 and doc["left_out"] == 2


def test_workloads_llm_lists_the_catalog_without_torch() -> None:
    code = ("import sys, io, json, contextlib\nfrom dlgpu.cli.main import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    rc = main(['workloads', 'llm', '--json'])\n"
            "assert rc == 0 and 'torch' not in sys.modules\nprint(buf.getvalue())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    models = {m["id"]: m for m in doc["models"]}
    assert doc["schema"] == "dlgpu.llm-catalog/1" and len(models) >= 37
    v3 = models["deepseek-v3"]
    assert v3["total_params"] > 600e9 and 30e9 < v3["active_params"] < 40e9 and not v3["measurable_here"]
    assert models["qwen3-0.6b"]["measurable_here"] and models["llama-3-8b"]["kv_bytes_per_token_fp16"] == 128 * 1024


def test_predict_serving_throughput_against_the_published_table(capsys: pytest.CaptureFixture[str]) -> None:
    """TensorRT-LLM v0.17 served Llama 3.1 8B in FP8 on an H100 at 28,837 output tokens/s (128 + 128 tokens,
    published_llm.csv): the prediction (this row is in the fit) lies within its interval of it, and asking for fewer
    requests in flight gives fewer tokens/s in total but more per request."""
    argv = ["predict", "llama-3.1-8b", "--task", "serve", "-H", "h100-sxm5-80gb", "-p", "fp8", "--set", "prompt=128",
            "--set", "output=128", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runtime"] == "tensorrt-llm" and doc["task"] == "serve" and doc["batch_size"] >= 1
    iv = doc["interval"]
    assert iv["low"] <= 28836.8 <= iv["high"]
    assert main([*argv, "-b", "8"]) == 0
    few = json.loads(capsys.readouterr().out)
    assert few["batch_size"] == 8 and few["tokens_per_s_total"] < doc["tokens_per_s_total"]
    assert few["tokens_per_s_per_sequence"] > doc["tokens_per_s_per_sequence"]
    assert main(["predict", "llama-3.1-8b", "--task", "serve", "-H", "h100-sxm5-80gb", "-p", "q4_k_m"]) == 2
    assert "fp8 and fp16" in capsys.readouterr().err
