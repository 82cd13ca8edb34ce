"""A fine-tuning job's settings: the method and the options people set, parsed from ``--method`` and ``--set KEY=V``
and checked (bad input is one ``BadInput`` line). Shared by measuring (``workloads``' fine-tuning wrapper), memory
and time prediction (``finetune.memory``, ``finetune.perf``) and ``advise``. No torch here.

The spellings follow the libraries people use: peft's module names for LoRA targets (``q_proj,v_proj``; ``all-linear``
for every linear layer but the output head), bitsandbytes' NF4 with double quantization for QLoRA, DeepSpeed's ZeRO
stages and PyTorch FSDP for sharding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dlgpu.errors import BadInput

METHODS = ("full", "freeze", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "sgd")
"""torch.optim.AdamW; bitsandbytes.optim.AdamW8bit; torch.optim.Adafactor (factored second moments); torch.optim.SGD
(momentum 0.9: one state per parameter)."""
SHARDING = ("none", "ddp", "zero1", "zero2", "zero3", "fsdp")
"""``none``: one GPU. ``ddp``: every GPU holds everything (gradients all-reduced). ``zero1``/``zero2``/``zero3``:
DeepSpeed ZeRO stages (optimizer states / + gradients / + parameters sharded). ``fsdp``: PyTorch FSDP
FULL_SHARD (as ZeRO-3)."""
OFFLOAD = ("none", "optimizer", "params")
"""ZeRO-Offload: ``optimizer`` keeps the optimizer states (and the fp32 master weights) in CPU memory; ``params``
(ZeRO-3 / FSDP only) the parameters too."""
WEIGHT_DTYPES = ("fp32", "bf16", "fp16")
LORA_DEFAULT_TARGETS = ("q_proj", "v_proj")
"""peft's default target modules for Llama-style models (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)."""
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a Llama-style decoder block, by peft's (Hugging Face's) module names."""

SETTINGS: dict[str, str] = {
    "lora_rank": "LoRA rank r (default 8)",
    "lora_alpha": "LoRA alpha (default 16; scaling alpha / r)",
    "lora_targets": "comma-separated module names (default q_proj,v_proj; all-linear for every linear layer)",
    "double_quant": "QLoRA: quantize the 4-bit scales too (true/false, default true)",
    "weights_dtype": "the dtype weights are stored in: bf16 ('bf16-true', default), fp16 or fp32 (mixed precision "
                     "with fp32 master weights under autocast)",
    "seq_len": "tokens per sample (default 512)",
    "freeze_layers": "method freeze: how many top layers train (default 2)",
    "optimizer": f"{', '.join(OPTIMIZERS)} (default adamw)",
    "checkpointing": "gradient checkpointing (true/false, default false)",
    "grad_accum": "micro-batches per optimizer step (default 1)",
    "gpus": "data-parallel GPUs (default 1)",
    "sharding": f"{', '.join(SHARDING)} (default none; ddp with several GPUs)",
    "offload": f"{', '.join(OFFLOAD)} (default none)",
}
"""Every ``--set`` key of a fine-tuning job, with its meaning and default."""


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "lora"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = LORA_DEFAULT_TARGETS
    double_quant: bool = True
    weights_dtype: str = "bf16"
    seq_len: int = 512
    freeze_layers: int = 2
    optimizer: str = "adamw"
    checkpointing: bool = False
    micro_batch: int = 1
    grad_accum: int = 1
    gpus: int = 1
    sharding: str = "none"
    offload: str = "none"
    extra: dict[str, str] = field(default_factory=dict)  # --set keys that belong to the workload, passed through

    @property
    def trains_adapters(self) -> bool:
        return self.method in ("lora", "qlora")

    @property
    def samples_per_step(self) -> int:
        """Samples per optimizer step over every GPU: micro-batch x accumulation x data-parallel GPUs."""
        return self.micro_batch * self.grad_accum * self.gpus

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    def describe(self) -> str:
        """One line: what is trained and how."""
        what = {"full": "full fine-tuning", "freeze": f"top {self.freeze_layers} layers trained",
                "lora": f"LoRA r={self.lora_rank} alpha={self.lora_alpha} on {','.join(self.lora_targets)}",
                "qlora": f"QLoRA (NF4 base, double quantization {'on' if self.double_quant else 'off'}) r="
                         f"{self.lora_rank} alpha={self.lora_alpha} on {','.join(self.lora_targets)}"}[self.method]
        par = "" if self.gpus == 1 else f", {self.gpus} GPUs {self.sharding}" + (
            f" + {self.offload} offload" if self.offload != "none" else "")
        return (f"{what}, {self.weights_dtype} weights, {self.optimizer}, micro-batch {self.micro_batch} x "
                f"{self.grad_accum} accumulation, {self.seq_len} tokens"
                + (", gradient checkpointing" if self.checkpointing else "") + par)


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise BadInput(f"--set {key}={value}: must be true or false", param="overrides")


def _positive(key: str, value: str, zero_ok: bool = False) -> int:
    try:
        n = int(value)
    except ValueError:
        raise BadInput(f"--set {key}={value}: must be a positive integer", param="overrides") from None
    if n < 0 or (n == 0 and not zero_ok):
        raise BadInput(f"--set {key}={value}: must be a positive integer", param="overrides")
    return n


def _choice(key: str, value: str, valid: tuple[str, ...]) -> str:
    v = value.strip().lower()
    if v not in valid:
        raise BadInput(f"--set {key}={value}: valid: {', '.join(valid)}", param="overrides")
    return v


def parse_finetune(method: str | None, overrides: Mapping[str, str], micro_batch: int | None = None,
                   workload_keys: tuple[str, ...] = ()) -> FinetuneConfig:
    """The job from ``--method``, ``--set`` and ``-b`` (the micro-batch). ``workload_keys``: ``--set`` keys the
    workload itself takes (kept in ``extra``); any other key is bad input naming the valid ones."""
    m = (method or "lora").strip().lower()
    if m not in METHODS:
        raise BadInput(f"--method {method}: valid: {', '.join(METHODS)}", param="method")
    kw: dict[str, Any] = {"method": m}
    extra: dict[str, str] = {}
    for key, value in overrides.items():
        if key in workload_keys and key not in SETTINGS:
            extra[key] = value
        elif key in ("lora_rank", "lora_alpha", "seq_len", "grad_accum", "gpus") or key == "freeze_layers":
            kw[key] = _positive(key, value)
        elif key == "lora_targets":
            targets = tuple(t.strip() for t in value.split(",") if t.strip())
            if not targets:
                raise BadInput(f"--set lora_targets={value}: name at least one module ({', '.join(LINEAR_MODULES)}"
                               ", or all-linear)", param="overrides")
            kw[key] = LINEAR_MODULES if targets == ("all-linear",) else targets
        elif key in ("double_quant", "checkpointing"):
            kw[key] = _bool(key, value)
        elif key == "weights_dtype":
            kw[key] = _choice(key, value, WEIGHT_DTYPES)
        elif key == "optimizer":
            kw[key] = _choice(key, value, OPTIMIZERS)
        elif key == "sharding":
            kw[key] = _choice(key, value, SHARDING)
        elif key == "offload":
            kw[key] = _choice(key, value, OFFLOAD)
        else:
            valid = sorted({*SETTINGS, *workload_keys})
            raise BadInput(f"--set {key}: a fine-tuning job takes {', '.join(valid)}", param="overrides")
    if micro_batch is not None:
        if micro_batch <= 0:
            raise BadInput(f"-b {micro_batch}: the micro-batch must be a positive integer", param="batch_size")
        kw["micro_batch"] = micro_batch
    lora = sorted(k for k in kw if k.startswith("lora_") or k == "double_quant")
    if lora and m not in ("lora", "qlora"):
        raise BadInput(f"--set {lora[0]}: only --method lora or qlora trains adapters (not {m})", param="overrides")
    if "freeze_layers" in kw and m != "freeze":
        raise BadInput(f"--set freeze_layers: only --method freeze trains the top layers alone (not {m})",
                       param="overrides")
    cfg = replace(FinetuneConfig(), **kw, extra=extra)
    return check(cfg)


def check(cfg: FinetuneConfig) -> FinetuneConfig:
    """The combinations that cannot run, as one ``BadInput`` line each; ``ddp`` filled in for several GPUs."""
    if cfg.gpus == 1 and cfg.sharding not in ("none", "ddp"):
        raise BadInput(f"--set sharding={cfg.sharding} shards over several GPUs: add --set gpus=N (N >= 2)",
                       param="overrides")
    if cfg.gpus > 1 and cfg.sharding == "none":
        cfg = replace(cfg, sharding="ddp")
    if cfg.offload == "params" and cfg.sharding not in ("zero3", "fsdp"):
        raise BadInput("--set offload=params offloads sharded parameters: it needs --set sharding=zero3 or fsdp "
                       "(and --set gpus=N)", param="overrides")
    if cfg.offload == "optimizer" and cfg.sharding not in ("zero1", "zero2", "zero3", "fsdp"):
        raise BadInput("--set offload=optimizer is ZeRO-Offload: it needs --set sharding=zero1, zero2, zero3 or fsdp "
                       "(and --set gpus=N)", param="overrides")
    if cfg.method == "qlora" and cfg.weights_dtype == "fp32":
        raise BadInput("--method qlora keeps the base in 4-bit NF4 with bf16 or fp16 compute: --set weights_dtype="
                       "fp32 cannot be 4-bit quantized that way (use bf16 or fp16)", param="overrides")
    for t in cfg.lora_targets:
        if t not in LINEAR_MODULES:
            raise BadInput(f"--set lora_targets: unknown module {t!r}; valid: {', '.join(LINEAR_MODULES)}, or "
                           "all-linear", param="overrides")
    return cfg
