"""Fine-tuning predicted: the memory of a job on each GPU by component against published figures (peft's trainable
counts, the ZeRO paper's per-GPU model states, QLoRA's bits per parameter), how it moves with the job's settings, the
step time's parts, and ``dlgpu predict --task finetune`` on the command line. Torch-free."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.finetune.config import parse_finetune
from dlgpu.finetune.memory import finetune_memory, largest_micro_batch
from dlgpu.finetune.model import FtModel, Weight, resolve_finetune_model
from dlgpu.finetune.perf import step_profile, step_time
from dlgpu.predict.calibration import load_calibration
from dlgpu.results import usable_memory_bytes

GB = 1e9
LLAMA3_8B = resolve_finetune_model("llama3_8b")


def states(mem: object) -> int:
    """Model states per GPU: weights being trained, their gradients, the optimizer's states."""
    return sum(mem.part(k) for k in ("trainable_weights", "gradients", "optimizer_states"))  # type: ignore[attr-defined]


# --- what trains --------------------------------------------------------------------------------------------------


def test_lora_trainable_parameters_are_peft_s() -> None:
    # peft's print_trainable_parameters() on Meta-Llama-3-8B: r=8 on q_proj,v_proj (peft's Llama default) ...
    mem = finetune_memory(LLAMA3_8B, parse_finetune("lora", {}))
    assert mem.trainable_params == 32 * 8 * ((4096 + 4096) + (4096 + 1024)) == 3_407_872
    # ... and r=16 on every linear layer: q, k, v, o, gate, up, down
    per_layer = (4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096) + 3 * (4096 + 14336)
    mem = finetune_memory(LLAMA3_8B, parse_finetune("lora", {"lora_rank": "16", "lora_targets": "all-linear"}))
    assert mem.trainable_params == 32 * 16 * per_layer == 41_943_040
    assert mem.total_params == 8_030_261_248  # the catalog's Llama 3 8B, every tensor counted


def test_bert_base_has_the_question_answering_model_s_parameters() -> None:
    # BertForQuestionAnswering(bert-base-uncased): 108,893,186 parameters (transformers' count)
    assert resolve_finetune_model("bert_base").params == 108_893_186
    assert finetune_memory(resolve_finetune_model("bert_base"), parse_finetune("full", {})).trainable_params == \
        108_893_186


# --- bytes per parameter ------------------------------------------------------------------------------------------


def test_full_fine_tuning_in_mixed_precision_is_16_bytes_per_parameter() -> None:
    p = LLAMA3_8B.params
    mixed = finetune_memory(LLAMA3_8B, parse_finetune("full", {"weights_dtype": "fp32"}))
    assert states(mixed) == 16 * p  # fp32 weights 4 + fp32 gradients 4 + AdamW m, v 8
    assert mixed.part("weight_copies") >= 2 * 0.85 * p  # autocast's bf16 copies of the matrices: HF's 18 B/param
    true16 = finetune_memory(LLAMA3_8B, parse_finetune("full", {}))
    assert states(true16) == 8 * p  # LLM.md: "Full-bf16 AdamW ≈ 8 B/param"
    eight = finetune_memory(LLAMA3_8B, parse_finetune("full", {"optimizer": "adamw8bit"}))
    assert eight.part("optimizer_states") / p == pytest.approx(2.03, abs=0.01)  # bitsandbytes 8-bit Adam


@pytest.mark.parametrize(("sharding", "published_gb"), [("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9)])
def test_zero_stages_match_the_zero_paper_at_64_gpus(sharding: str, published_gb: float) -> None:
    # ZeRO paper Fig. 1: a 7.5B model, 64 GPUs, mixed-precision Adam (K = 12)
    model = FtModel("x", "7.5B", "decoder", 1, 4096, 4096, 32, 32, 128, 32000, 2048, True,
                    (Weight("w", 0, "linear", 75_000, 100_000),), 32000, "test")
    cfg = parse_finetune("full", {"gpus": "64", "sharding": sharding})
    assert round(states(finetune_memory(model, cfg)) / GB, 1) == published_gb
    one = finetune_memory(model, parse_finetune("full", {"gpus": "2", "sharding": "zero1"}))
    assert one.part("trainable_weights") == 2 * 7.5e9  # DeepSpeed's 16-bit working copy


def test_qlora_base_is_nf4_for_the_linear_layers_and_fp32_for_the_rest() -> None:
    frozen = {w.role: 0 for w in LLAMA3_8B.weights}
    for w in LLAMA3_8B.weights:
        frozen[w.role] += w.elements
    linear, rest = frozen["linear"], LLAMA3_8B.params - frozen["linear"]
    assert linear == 8_030_261_248 - 2 * 128_256 * 4096 - (2 * 32 + 1) * 4096
    dq = finetune_memory(LLAMA3_8B, parse_finetune("qlora", {})).part("base_weights")
    plain = finetune_memory(LLAMA3_8B, parse_finetune("qlora", {"double_quant": "false"})).part("base_weights")
    # NF4: 4 bits + an fp32 absmax per 64 (4.5 bits); embedding, head, norms in fp32 (prepare_model_for_kbit_training)
    assert (plain - 4 * rest) * 8 / linear == pytest.approx(4.5, abs=0.01)
    # double quantization saves 0.373 bit per parameter (QLoRA paper)
    assert (plain - dq) * 8 / linear == pytest.approx(0.373, abs=0.003)
    assert (dq - 4 * rest) / linear == pytest.approx(0.5 + 0.127 / 8, abs=0.001)


# --- how memory moves with the job ---------------------------------------------------------------------------------


def test_checkpointing_lowers_activations_and_micro_batch_scales_them() -> None:
    for method in ("full", "lora", "qlora"):
        cfg = parse_finetune(method, {"seq_len": "1024"})
        plain = finetune_memory(LLAMA3_8B, cfg).part("activations")
        ckpt = finetune_memory(LLAMA3_8B, replace(cfg, checkpointing=True)).part("activations")
        assert ckpt < plain / 5
        for b in (2, 3, 8):
            scaled = finetune_memory(LLAMA3_8B, replace(cfg, micro_batch=b))
            assert scaled.part("activations") == pytest.approx(b * plain, rel=1e-9)
            assert scaled.part("logits") == b * finetune_memory(LLAMA3_8B, cfg).part("logits")


def test_sharding_lowers_the_memory_per_gpu() -> None:
    ddp = finetune_memory(LLAMA3_8B, parse_finetune("full", {"gpus": "8"}))
    z2 = finetune_memory(LLAMA3_8B, parse_finetune("full", {"gpus": "8", "sharding": "zero2"}))
    z3 = finetune_memory(LLAMA3_8B, parse_finetune("full", {"gpus": "8", "sharding": "zero3"}))
    off = finetune_memory(LLAMA3_8B, parse_finetune("full", {"gpus": "8", "sharding": "zero3",
                                                             "offload": "optimizer"}))
    assert ddp.peak_bytes > z2.peak_bytes > z3.peak_bytes > off.peak_bytes
    assert off.cpu_bytes == int(1.5 * 16 * LLAMA3_8B.params)  # DeepSpeed's estimator: 16Ψ x 1.5 on the CPU
    assert off.deepspeed is not None and off.deepspeed["cpu_bytes"] == 16 * LLAMA3_8B.params * 1.5


def test_largest_micro_batch_fits_and_one_more_does_not() -> None:
    usable = usable_memory_bytes(load_catalog().gpu("a100-sxm4-80gb").memory_bytes or 0)
    cfg = parse_finetune("lora", {"seq_len": "1024"})
    b = largest_micro_batch(LLAMA3_8B, cfg, usable)
    assert b >= 2
    assert finetune_memory(LLAMA3_8B, replace(cfg, micro_batch=b)).peak_bytes <= usable
    assert finetune_memory(LLAMA3_8B, replace(cfg, micro_batch=b + 1)).peak_bytes > usable


# --- time ------------------------------------------------------------------------------------------------------------


def test_frozen_weights_skip_weight_gradients_and_qlora_pays_dequantization() -> None:
    full = step_profile(LLAMA3_8B, parse_finetune("full", {}))
    lora = step_profile(LLAMA3_8B, parse_finetune("lora", {}))
    # forward + activation gradients (+ adapters) without the weight gradients: about 2/3 of full's FLOPs
    assert lora.flops / full.flops == pytest.approx(2 / 3, abs=0.03)
    assert not any(o.op.endswith("grad_weight") and "lora" not in o.op for o in lora.ops)
    qlora = step_profile(LLAMA3_8B, parse_finetune("qlora", {}))
    assert any(o.op == "dequantize_4bit" for o in qlora.ops)
    ckpt = step_profile(LLAMA3_8B, parse_finetune("lora", {"checkpointing": "true"}))
    assert ckpt.flops > lora.flops * 1.3  # the forward again
    cat, cal = load_catalog(), load_calibration()
    gpu = cat.gpu("rtx-4090")
    t = {m: step_time(LLAMA3_8B, parse_finetune(m, {}), gpu, cal, cat).step_time_s for m in ("lora", "qlora")}
    assert t["qlora"] > t["lora"]


def test_collectives_add_time_with_more_gpus() -> None:
    cat, cal = load_catalog(), load_calibration()
    gpu = cat.gpu("h100-sxm5-80gb")
    one = step_time(LLAMA3_8B, parse_finetune("full", {"checkpointing": "true"}), gpu, cal, cat)
    assert one.collectives_s == 0
    times = [step_time(LLAMA3_8B, parse_finetune("full", {"gpus": str(n), "sharding": "zero3",
                                                          "checkpointing": "true"}), gpu, cal, cat)
             for n in (2, 4, 8)]
    comm = [s.collectives_s or 0 for s in times]
    assert 0 < comm[0] < comm[1] < comm[2]
    # ZeRO-3 all-gathers the 16-bit weights twice and reduce-scatters 16-bit gradients: 3 x (N-1)/N x 2Ψ per GPU,
    # at half the catalog's bidirectional 900 GB/s
    assert comm[2] == pytest.approx(3 * 7 / 8 * 2 * LLAMA3_8B.params / 450e9, rel=1e-6)
    for s, c in zip(times, comm, strict=True):  # added to the GPU work, not hidden behind it (stated)
        assert s.step_time_s == pytest.approx(s.compute_s + c)


def test_a_gpu_without_an_interconnect_talks_over_pcie_or_says_it_cannot_time_it() -> None:
    cat, cal = load_catalog(), load_calibration()
    ddp = parse_finetune("lora", {"gpus": "2"})
    via_pcie = step_time(LLAMA3_8B, ddp, cat.gpu("rtx-4090"), cal, cat)
    assert via_pcie.complete and "PCIe 4.0 x16" in via_pcie.collectives_basis
    unknown = step_time(LLAMA3_8B, ddp, cat.gpu("rtx-3080-10gb"), cal, cat)
    assert not unknown.complete and unknown.collectives_s is None


# --- the command line ------------------------------------------------------------------------------------------------


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["predict", "llama3_8b", "--task", "finetune", *argv, "--json"]) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_predict_finetune_json_keeps_the_prediction_fields(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _predict(capsys, "--method", "lora", "-H", "a100-sxm4-80gb", "-b", "2", "--set", "samples=50000",
                   "--set", "epochs=3")
    assert doc["schema"] == "dlgpu.finetune-predict/1" and doc["source"] == "predicted"
    for key in ("peak_mem_bytes", "fits", "samples_per_s", "step_time_s", "tokens_per_s", "breakdown",
                "largest_micro_batch", "largest_seq_len", "suggestions", "basis", "activations_source",
                "activations_trace"):
        assert key in doc, key
    assert doc["activations_source"] in ("traced", "formula")
    assert doc["fits"] is True and doc["batch_size"] == 2
    assert doc["tokens_per_s"] == pytest.approx(512 * doc["samples_per_s"])  # type: ignore[operator]
    assert doc["job"]["time_s"] == pytest.approx(150_000 / doc["samples_per_s"])  # type: ignore[index,operator]
    keys = {p["key"] for p in doc["breakdown"]}  # type: ignore[attr-defined]
    assert {"base_weights", "trainable_weights", "gradients", "optimizer_states", "activations", "logits",
            "workspace", "framework_reserve"} <= keys


def test_full_fine_tuning_does_not_fit_a_24gb_gpu_and_says_what_would(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _predict(capsys, "--method", "full", "-H", "rtx-4090")
    assert doc["fits"] is False and doc["largest_micro_batch"] == 0
    assert doc["reasons"] and "GiB usable" in doc["reasons"][0]  # type: ignore[index]
    fixes = doc["suggestions"]
    assert fixes and all(s["fits"] for s in fixes)  # type: ignore[union-attr]
    assert any("qlora" in s["change"] for s in fixes)  # type: ignore[union-attr]
    qlora = _predict(capsys, "--method", "qlora", "-H", "rtx-4090")
    assert qlora["fits"] is True and qlora["peak_mem_bytes"] < doc["peak_mem_bytes"]  # type: ignore[operator]


def test_predict_finetune_prints_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "llama3_8b", "--task", "finetune", "--method", "qlora", "-H", "rtx-4090"]) == 0
    out = capsys.readouterr().out
    for needle in ("base weights", "activations", "logits", "peak", "usable", "tokens/s", "largest micro-batch"):
        assert needle in out, needle


@pytest.mark.parametrize(("argv", "needle"), [
    (["--method", "dora", "-H", "rtx-4090"], "--method dora: valid: full, freeze, lora, qlora"),
    (["--method", "lora", "-H", "rtx-4090", "--set", "lora_rank=0"], "lora_rank=0: must be a positive integer"),
    (["--method", "full", "-H", "rtx-4090", "--set", "sharding=zero2"], "add --set gpus=N"),
    (["--method", "qlora", "-H", "rtx-4090", "--set", "weights_dtype=fp32"], "cannot be 4-bit quantized"),
    (["--method", "lora", "-H", "no-such-gpu"], "no-such-gpu"),
    (["-H", "rtx-4090"], "needs --method"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "llama3_8b", "--task", "finetune", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert "--set --set" not in err[0]


def test_method_without_the_finetune_task_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "llama3_8b", "--method", "lora", "-H", "rtx-4090"]) == 2
    assert "--task finetune" in capsys.readouterr().err


def test_freeze_with_checkpointing_keeps_every_blocks_input_and_backpropagates_through_all() -> None:
    # transformers makes the embeddings' output require a gradient under checkpointing: the frozen blocks are
    # checkpointed and run backward too (activation gradients only), as the bench measures and the trace shows
    model = resolve_finetune_model("llama3_8b")
    plain = parse_finetune("freeze", {"seq_len": "512", "freeze_layers": "4"}, 1)
    ckpt = replace(plain, checkpointing=True)
    t, h = 512, model.hidden
    act = finetune_memory(model, ckpt).part("activations")
    per_block = finetune_memory(model, replace(ckpt, checkpointing=False, freeze_layers=1)).part("activations") / t
    assert act == pytest.approx(t * (model.layers * 2 * h + per_block), rel=1e-6)
    linear = {w.module for w in model.weights if w.role == "linear"}

    def products(cfg: object, what: str) -> int:
        return sum(o.count for o in step_profile(model, cfg).ops  # type: ignore[arg-type]
                   if o.op.endswith(what) and o.op.split(".")[0] in linear)
    assert products(ckpt, ".grad_input") == model.layers * 7  # q, k, v, o, gate, up, down in every block
    assert products(plain, ".grad_input") == 4 * 7
    assert products(ckpt, ".grad_weight") == 4 * 7  # only the top 4 blocks' weights train
