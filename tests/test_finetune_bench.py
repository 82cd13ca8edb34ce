"""``dlgpu bench --task finetune --method full|freeze|lora|qlora``: real tiny models fine-tuned on the CPU
(``test_llm``: a 2-layer Llama, hidden 64, vocab 256; ``test_bert``: a 2-layer BERT QA model), through the workload,
the harness, the bench loop and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from conftest import TINY_BUDGET
from dlgpu.cli.main import main
from dlgpu.devices import detect
from dlgpu.errors import BadInput
from dlgpu.finetune.config import parse_finetune
from dlgpu.measure.harness import build, measure
from dlgpu.measure.suite import plan_suite
from dlgpu.results import DeviceInfo
from dlgpu.workloads import PlainContext, get_workload
from dlgpu.workloads.finetune import finetune_kind
from dlgpu.workloads.models.finetune import FinetuneWorkload, bitsandbytes_unavailable

CPU = torch.device("cpu")
SEQ = "16"


@pytest.fixture(scope="module")
def cpu() -> DeviceInfo:
    device = detect()[0][0]
    assert device.kind == "cpu"
    return device


def _job(method: str = "lora", micro_batch: int = 2, **settings: str) -> dict[str, Any]:
    return parse_finetune(method, {"seq_len": SEQ, **settings}, micro_batch).to_dict()


def _workload(name: str, method: str = "lora", seed: int = 0, lr: float = 1e-4, **settings: str) -> FinetuneWorkload:
    spec = get_workload(name)
    torch.manual_seed(seed)
    w = FinetuneWorkload(spec, spec.resolve({}), _job(method, **settings), lr=lr)
    w.train(True)
    return w


def _losses(w: FinetuneWorkload, steps: int, seed: int = 1) -> list[float]:
    torch.manual_seed(seed)
    batch = w.make_batch(2, CPU)
    out = []
    for _ in range(steps):
        w.train_step(batch, PlainContext())
        assert w.last_loss is not None
        out.append(float(w.last_loss))
    return out


def _trainable(w: FinetuneWorkload) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in w.model.named_parameters() if p.requires_grad}


# --- the workloads ----------------------------------------------------------------------------------------------


def test_which_workloads_fine_tune() -> None:
    assert finetune_kind(get_workload("test_llm")) == "decoder"
    assert finetune_kind(get_workload("qwen3-0.6b")) == "decoder"
    assert finetune_kind(get_workload("test_bert")) == "encoder"
    assert finetune_kind(get_workload("bert_base")) == "encoder"
    assert finetune_kind(get_workload("test_resnet")) is None


def test_lora_trains_only_the_adapters_r_times_din_plus_dout() -> None:
    targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    w = _workload("test_llm", "lora", lora_targets=",".join(targets), lora_rank="4")
    trainable = _trainable(w)
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    cfg = w.model.config
    q_out = cfg.num_attention_heads * cfg.head_dim
    kv_out = cfg.num_key_value_heads * cfg.head_dim
    shapes = {"q_proj": (cfg.hidden_size, q_out), "k_proj": (cfg.hidden_size, kv_out),
              "v_proj": (cfg.hidden_size, kv_out), "o_proj": (q_out, cfg.hidden_size)}
    expected = cfg.num_hidden_layers * sum(4 * (d_in + d_out) for d_in, d_out in shapes.values())
    assert sum(p.numel() for p in trainable.values()) == expected
    info = w.describe()
    assert info["trainable_parameters"] == expected
    assert info["lora"]["r"] == 4 and info["lora"]["adapter_dtype"] == "float32"  # peft default: fp32 adapters


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_loss_falls_over_real_steps_on_a_fixed_batch(method: str) -> None:
    losses = _losses(_workload("test_llm", method, lr=1e-3), 5)
    assert losses[-1] < losses[0], losses


def test_freeze_trains_only_the_top_layers_and_the_final_norm() -> None:
    w = _workload("test_llm", "freeze", lr=1e-2, freeze_layers="1")
    names = set(_trainable(w))
    assert names and all(n.startswith(("model.layers.1.", "model.norm.")) for n in names)
    assert any(n.startswith("model.norm.") for n in names)
    before = {n: p.detach().clone() for n, p in w.model.named_parameters()}
    _losses(w, 1)
    for n, p in w.model.named_parameters():
        if n not in names:
            assert torch.equal(p, before[n]), n  # frozen: untouched
        elif p.dim() >= 2:  # trained matrices moved (a norm's 1.0 may not, by less than bf16's step near 1)
            assert not torch.equal(p, before[n]), n


def test_bert_fine_tunes_its_qa_step_with_each_method() -> None:
    lora = _workload("test_bert", "lora")
    names = set(_trainable(lora))
    assert any(".attention.self.query.lora_A" in n for n in names)
    assert any(".attention.self.value.lora_B" in n for n in names)
    assert all("lora_" in n or "qa_outputs" in n for n in names)  # + peft's trained copy of the task head
    freeze = _workload("test_bert", "freeze", freeze_layers="1")
    assert all(n.startswith(("bert.encoder.layer.1.", "qa_outputs.")) for n in _trainable(freeze))
    assert all(torch.isfinite(torch.tensor(v)) for v in _losses(freeze, 2))


def test_adamw8bit_keeps_uint8_state() -> None:
    why = bitsandbytes_unavailable(CPU, "adamw8bit")
    if why:
        pytest.skip(why)
    w = _workload("test_llm", "full", optimizer="adamw8bit")
    _losses(w, 1)
    info = w.describe()
    assert info["optimizer_class"] == "AdamW8bit" and "uint8" in info["optimizer_state_dtypes"]
    # 8-bit moments: well under AdamW's two bf16 states per parameter
    assert info["optimizer_state_bytes"] < 2 * info["trainable_weights_bytes"]


def test_qlora_keeps_the_base_in_4bit_nf4_and_steps() -> None:
    why = bitsandbytes_unavailable(CPU, "nf4")
    if why:
        pytest.skip(why)
    w = _workload("test_llm", "qlora")
    linears = [m for n, m in w.model.named_modules() if n.endswith(("q_proj.base_layer", "down_proj"))]
    assert linears and all(type(m.weight).__name__ == "Params4bit" and m.weight.dtype == torch.uint8 for m in linears)
    losses = _losses(w, 2)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses)
    info = w.describe()
    assert info["qlora"]["quantized_linear_layers"] == 2 * 7
    lora = _workload("test_llm", "lora").describe()
    assert info["trainable_parameters"] == lora["trainable_parameters"]
    assert info["total_parameters"] == lora["total_parameters"]  # peft counts a 4-bit byte as two parameters
    assert info["base_weights_bytes"] < lora["base_weights_bytes"]  # packed 4-bit + quant_state < bf16


def test_checkpointing_runs_and_gives_the_same_loss() -> None:
    plain = _losses(_workload("test_llm", "lora", seed=3), 2)
    checkpointed = _workload("test_llm", "lora", seed=3, checkpointing="true")
    assert checkpointed.model.base_model.model.model.gradient_checkpointing  # type: ignore[union-attr]
    assert _losses(checkpointed, 2) == pytest.approx(plain, rel=1e-3)


# --- the harness and the bench loop -------------------------------------------------------------------------------


def test_the_harness_times_grad_accum_micro_batches_per_step(cpu: DeviceInfo) -> None:
    spec = get_workload("test_llm")
    built = build(spec, spec.resolve({}), cpu, finetune=_job("lora", grad_accum="2"))
    result = measure(built, "finetune", "bf16", 2, TINY_BUDGET, remeasure=0)
    assert result.status == "ok", result.reason
    assert result.task == "finetune" and result.batch_size == 4 and result.requested_batch_size == 4
    st = result.settings
    assert st["micro_batch"] == 2 and st["grad_accum"] == 2 and st["samples_per_step"] == 4
    assert st["tokens_per_s"] == pytest.approx(result.samples_per_s * int(SEQ))
    assert st["gradients_bytes"] == st["trainable_weights_bytes"] > 0 and st["optimizer_state_bytes"] > 0
    assert st["finetune"]["weights_dtype"] == "bf16" and st["versions"]["peft"]
    assert result.peak_mem_kind == "process-peak-rss" and result.peak_mem_bytes
    # fp32 weights: mixed precision, rebuilt in fp32 on the same instance
    mixed = measure(built, "finetune", "fp32", 2, TINY_BUDGET, remeasure=0)
    assert mixed.status == "ok", mixed.reason
    assert mixed.settings["autocast_dtype"] == "bfloat16" and mixed.settings["weights_dtype"] == "fp32"
    # peft keeps adapters in fp32 whatever the weights (autocast_adapter_dtype=True): the same bytes
    assert mixed.settings["trainable_weights_bytes"] == st["trainable_weights_bytes"]


def _plan(**kw: Any) -> Any:
    args: dict[str, Any] = {"workloads": ["test_llm"], "devices": ["cpu"], "precisions": None, "tasks": ["finetune"],
                            "quick": True, "batch_size": None, "overrides": {}, "timing": TINY_BUDGET,
                            "custom_specs": (), "include_hostname": False, "telemetry": False,
                            "telemetry_period_s": 0.1}
    args.update(kw)
    return plan_suite(args.pop("workloads"), args.pop("devices"), args.pop("precisions"), args.pop("tasks"), **args)


def test_plans_carry_the_job_and_all_never_includes_finetune() -> None:
    suite = _plan(overrides={"lora_rank": "4", "seq_len": "32", "attention": "eager"}, method="lora")
    (plan,) = suite.plans
    assert plan.task == "finetune" and plan.precisions == ("bf16",) and plan.batch_size == 1
    assert plan.finetune is not None and plan.finetune["lora_rank"] == 4 and plan.finetune["seq_len"] == 32
    assert plan.overrides == {"attention": "eager", "method": "lora", "lora_rank": "4", "seq_len": "32"}
    assert suite.config.method == "lora" and suite.config.tasks == ("finetune",)
    bert = _plan(workloads=["test_bert"], precisions=["all"], method="full")
    assert bert.plans[0].precisions == ("fp32", "bf16", "fp16") and bert.plans[0].params["seq_len"] == 32
    for tasks in (["all"], None):
        assert all(p.task != "finetune" for p in _plan(tasks=tasks).plans)


@pytest.mark.parametrize(("argv", "says"), [
    (["--task", "finetune", "--method", "dora"], "--method dora: valid: full, freeze, lora, qlora"),
    (["--task", "finetune", "--set", "lora_rank=0"], "--set lora_rank=0: must be a positive integer"),
    (["--method", "lora"], "--method lora: the fine-tuning method is for --task finetune"),
    (["--task", "infer", "--set", "lora_rank=4"], "--set lora_rank: a fine-tuning setting, for --task finetune"),
    (["--task", "finetune", "-w", "test_resnet"], "test_resnet does not support --task finetune"),
    (["--task", "finetune", "--method", "qlora", "--set", "weights_dtype=fp32"], "--method qlora keeps the base"),
    (["--task", "finetune", "--method", "qlora", "-p", "fp32"], "--precision fp32: --method qlora"),
    (["--task", "finetune", "-p", "int8"], "the dtype the weights are stored in"),
    (["--task", "finetune", "--set", "gpus=2"], "--set gpus: bench measures fine-tuning on one device"),
    (["--task", "finetune", "--set", "seq_len=65"], "--set seq_len=65: test_llm takes at most 64 tokens"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "-w" not in argv:
        argv = [*argv, "-w", "test_llm"]
    assert main(["bench", *argv, "--quick", "--no-save", "--no-telemetry"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err


def test_finetune_without_workloads_names_the_fine_tunable_ones() -> None:
    with pytest.raises(BadInput, match=r"name the workloads to fine-tune.*test_llm"):
        _plan(workloads=None)
    with pytest.raises(BadInput, match=r"test_resnet cannot be fine-tuned here .*fine-tunable: .*test_bert"):
        _plan(workloads=["test_llm", "test_resnet"])


def test_cli_gives_one_json_document_with_an_ok_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "-w", "test_llm", "--task", "finetune", "--method", "lora", "--quick", "--no-save",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (result,) = doc["results"]
    assert result["status"] == "ok" and result["task"] == "finetune" and result["precision"] == "bf16"
    assert result["settings"]["method"] == "lora" and result["overrides"] == {"method": "lora"}
    assert doc["config"]["method"] == "lora" and doc["config"]["tasks"] == ["finetune"]
    from dlgpu.store.schema import validate_document

    validate_document(doc, "bench --task finetune")  # the store imports it
