"""The memory of a fine-tuning job on each GPU, by component, and the largest micro-batch and sequence that fit.
No torch here. LLM.md is the project's sourced notes (``/work/shared/notes/LLM.md``), section 7 unless said.

What is trained (``split``): ``full`` every weight; ``freeze`` the top ``freeze_layers`` blocks and the final norm (a
decoder) or the task head (BERT), the embedding and the output head frozen; ``lora``/``qlora`` the adapters, r x (d_in +
d_out) per adapted matrix (LoRA, arXiv:2106.09685) for each target module of every block, each expert of an MoE layer
adapted on its own.

Bytes per parameter, by what keeps them:

- PyTorch (``sharding`` none, ddp, fsdp): ``weights_dtype`` bf16/fp16 is "true" 16-bit training: 16-bit weights and
  gradients, and optimizer states in the weights' dtype (``torch.optim.AdamW`` creates them ``zeros_like`` the
  parameter): 8 B/param with AdamW (LLM.md: "Full-bf16 AdamW ≈ 8 B/param"). ``fp32`` is mixed precision under
  autocast: fp32 weights, fp32 gradients, fp32 states: 16 B/param with AdamW, and autocast's bf16 copies of the
  matrices, which the autograd graph keeps for the backward: 2 B per matrix parameter more (HF's 18 B/param,
  LLM.md). peft's adapters are fp32 whatever the base (``get_peft_model(autocast_adapter_dtype=True)``, peft 0.21.2
  tuners_utils.cast_adapter_dtype): 16 B per adapter parameter with AdamW (LLM.md "Adapter states: 16·P_lora").
- DeepSpeed (``zero1``/``zero2``/``zero3``): its mixed precision, 16-bit working weights and gradients, fp32 master
  weights and fp32 states: K = 12 with Adam, 16 B/param (the ZeRO paper's Ψ accounting, LLM.md); frozen weights in
  16-bit.
- Optimizer states per parameter: AdamW 2 states; bitsandbytes AdamW8bit two uint8 states + an fp32 absmax per
  256-element block each (2.03 B/param), fp32 for tensors under 4096 elements (``min_8bit_size``; bitsandbytes
  0.50.2 optim/optimizer.py); ``torch.optim.Adafactor`` a row and a column second-moment vector per matrix (factored),
  no first moment; SGD one momentum buffer.
- QLoRA's base: bitsandbytes NF4, every linear layer of the blocks packed at 0.5 B/param with one fp32 absmax per 64
  (+ 0.5 bit) or, with double quantization, one uint8 per 64 plus an fp32 absmax per 256 of those and an fp32
  offset per tensor (saving 0.373 bit/param; arXiv:2305.14314; bitsandbytes functional.quantize_4bit), plus its
  16-value NF4 code (and the 256-value code of the nested quantization). transformers keeps the output head
  unquantized (quantizers/base.get_keys_to_not_convert), and peft's ``prepare_model_for_kbit_training`` (which
  TRL's SFTTrainer and the QLoRA recipe call) casts every fp16/bf16 parameter that is not 4-bit to fp32: the
  embedding, the head and the norms are 4 B/param (peft 0.21.2 utils/other.py).

Activations kept for the backward, per token and block (a = 2 bytes, the bf16/fp16 compute width; LLM.md: "for
SwiGLU re-derive", done here from what each operation of a Hugging Face Llama block saves with SDPA attention):

- every block: each RMSNorm computes in fp32 and keeps its fp32 input (4h, twice); fused attention keeps q, k, v and
  its output (a(2q + 2kv), q = heads x head_dim, kv = kv_heads x head_dim) and its fp32 log-sum-exp (4 x heads); the
  SwiGLU keeps the gate output, the SiLU output and the up output (3af); RoPE keeps nothing per token (its cos/sin
  need no gradient);
- where the block's weights train (full, freeze): each linear keeps its input for the weight gradient (q/k/v and
  gate/up share the norms' outputs, ah each; o's input is the attention output, kept already; down's is the SwiGLU
  product, af) and each norm its normalized input for its weight's gradient (rh, r the residual stream's width);
- a LoRA adapter keeps its input cast to fp32 (peft casts the input to the adapter's dtype: 4 d_in; where the input
  is already fp32, adapters on the same input share it) and its rank-r intermediate (4r);
- BERT blocks (GELU, dropout, LayerNorm): Korthikanti et al.'s 34 sbh with fused attention (no s² term; LLM.md), and
  20 sbh where the linear layers are frozen (their inputs, 14 sbh of the 34, are then not kept).
- The residual stream is fp32 where the embedding is (QLoRA after ``prepare_model_for_kbit_training``) or autocast
  adds bf16 outputs to fp32 weights' results (``weights_dtype=fp32``): r = 4, else 2.
- Gradient checkpointing (Hugging Face's, per block): each trained block keeps only its input (rh per token) plus one
  block's activations while it is recomputed (LLM.md: "Full checkpointing: 2·s·b·h per layer plus one layer's").
- Logits: the head's output (bf16; fp32 from QLoRA's fp32 head), the fp32 log-softmax the loss keeps and its fp32
  gradient: T x vocab x (2 or 4 + 8) bytes (LLM.md: "4·s·b·V (fp32); upcasts and the loss gradient multiply it").
- Workspace (dlgpu's estimate, not a sourced figure): two FFN-wide gradient buffers of the micro-batch alive at once in
  the MLP's backward (2 x T x f x a), and for QLoRA the largest matrix dequantized to 16 bits before its matmul.
- The optimizer step (``torch.optim.AdamW``'s default foreach implementation materializes its intermediates as a list
  the size of a state, PyTorch's optimizer docs): a state's size more, at a time when the activations are freed; the
  peak takes the larger of the two. DeepSpeed's fused Adam and bitsandbytes' 8-bit kernels need none.
- Framework overhead: the CUDA context and the allocator's fragmentation are the device's reserve
  (``results.USABLE_MEMORY_FRACTION``, the share ``dlgpu bench`` plans with): a job fits where its peak is within
  the usable memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlgpu.errors import BadInput

from .config import FinetuneConfig
from .model import FtModel, Weight
from .sharding import Shares, deepspeed_estimate, deepspeed_mode, shard

A = 2
"""Bytes of an activation at the compute width (bf16 or fp16)."""
NF4_BLOCK, NESTED_BLOCK = 64, 256
"""bitsandbytes ``quantize_4bit`` blocksize 64; double quantization blocks of 256 absmax values."""
ADAM8_BLOCK, MIN_8BIT = 256, 4096
"""bitsandbytes 8-bit optimizers: an fp32 absmax per 256 elements per state; tensors under 4096 elements 32-bit."""
_SHARED_INPUT = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "gate_proj": "mlp_in",
                 "up_proj": "mlp_in"}


@dataclass(frozen=True)
class Part:
    key: str
    label: str
    bytes: int
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "bytes": self.bytes, "basis": self.basis}


@dataclass(frozen=True)
class Memory:
    """One GPU's memory by component (``parts``), its peak, the CPU memory offload needs, the parameter counts."""

    parts: tuple[Part, ...]
    peak_bytes: int
    peak_basis: str
    cpu_bytes: int | None
    cpu_basis: str
    total_params: int
    trainable_params: int
    frozen_params: int
    deepspeed: dict[str, float] | None

    def part(self, key: str) -> int:
        return next((p.bytes for p in self.parts if p.key == key), 0)


# --- what trains -------------------------------------------------------------------------------------------------

def adapters(model: FtModel, cfg: FinetuneConfig) -> list[Weight]:
    """LoRA's A (d_in x r) and B (r x d_out) for each target module of every block (one pair per expert)."""
    if cfg.lora_rank <= 0:
        raise BadInput(f"--set lora_rank={cfg.lora_rank}: must be a positive integer", param="overrides")
    present = set(model.modules())
    missing = [t for t in cfg.lora_targets if t not in present]
    if len(missing) == len(cfg.lora_targets):
        raise BadInput(f"--set lora_targets={','.join(cfg.lora_targets)}: {model.id} has none of these modules "
                       f"(it has {', '.join(sorted(present))})", param="overrides")
    r = cfg.lora_rank
    out: list[Weight] = []
    for w in model.weights:
        if w.role == "linear" and w.module in cfg.lora_targets:
            out += [Weight(f"{w.module}.lora_A", w.layer, "adapter", w.d_in, r, w.copies, w.active),
                    Weight(f"{w.module}.lora_B", w.layer, "adapter", r, w.d_out, w.copies, w.active)]
    return out


def split(model: FtModel, cfg: FinetuneConfig) -> tuple[list[Weight], list[Weight]]:
    """(trainable, frozen) weights of the job (module docstring)."""
    if cfg.trains_adapters:
        return adapters(model, cfg), list(model.weights)
    if cfg.method == "full":
        return list(model.weights), []
    if cfg.freeze_layers > model.layers:
        raise BadInput(f"--set freeze_layers={cfg.freeze_layers}: {model.id} has {model.layers} layers",
                       param="overrides")
    first = model.layers - cfg.freeze_layers

    def trains(w: Weight) -> bool:
        if w.layer is not None:
            return w.layer >= first
        # with the top blocks: a decoder's final norm, an encoder's task head (what `dlgpu bench` trains too)
        return w.module == "output_norm" if model.kind == "decoder" else w.module.startswith("qa_outputs")

    return [w for w in model.weights if trains(w)], [w for w in model.weights if not trains(w)]


def trained_layers(model: FtModel, cfg: FinetuneConfig) -> range:
    """The blocks whose activations are kept for the backward: all of them, or the top ``freeze_layers``."""
    return range(model.layers - cfg.freeze_layers, model.layers) if cfg.method == "freeze" else range(model.layers)


# --- bytes -------------------------------------------------------------------------------------------------------

def nf4_bytes(w: Weight, double_quant: bool) -> int:
    """bitsandbytes NF4 of one weight tensor: packed 4-bit values, absmax per 64, the code tables (module docstring)."""
    n = w.elements
    blocks = math.ceil(n / NF4_BLOCK)
    # double quantization: uint8 absmax, an fp32 absmax per 256 of them, the offset, the nested code; else fp32 absmax
    nested = blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + 4 + 4 * NESTED_BLOCK
    stats = nested if double_quant else 4 * blocks
    return math.ceil(n / 2) + stats + 4 * 16  # the NF4 code: 16 fp32 values


def weights_width(cfg: FinetuneConfig) -> int:
    return 4 if cfg.weights_dtype == "fp32" else 2


def residual_width(cfg: FinetuneConfig) -> int:
    """The residual stream's bytes per value (module docstring)."""
    return 4 if cfg.method == "qlora" or cfg.weights_dtype == "fp32" else 2


def widths(cfg: FinetuneConfig) -> tuple[int, int, int, int]:
    """(working weight, gradient, master copy, optimizer state) bytes per trainable parameter."""
    if deepspeed_mode(cfg):
        return 2, 2, 4, 4
    if cfg.trains_adapters:
        return 4, 4, 0, 4
    wb = weights_width(cfg)
    return wb, wb, 0, wb


def optimizer_state_bytes(tensors: list[Weight], optimizer: str, state_width: int) -> int:
    """The optimizer's states for these trainable tensors (module docstring)."""
    total = 0
    for w in tensors:
        n = w.elements
        if optimizer == "adamw":
            total += 2 * state_width * n
        elif optimizer == "adamw8bit":
            total += 8 * n if n < MIN_8BIT else 2 * n + 2 * 4 * math.ceil(n / ADAM8_BLOCK)
        elif optimizer == "adafactor":
            matrix = w.d_out > 1 and w.role != "vector"
            total += state_width * ((w.d_in + w.d_out) * w.copies if matrix else n)
        else:  # sgd with momentum
            total += state_width * n
    return total


def base_bytes(frozen: list[Weight], cfg: FinetuneConfig) -> int:
    if cfg.method == "qlora":
        return sum(nf4_bytes(w, cfg.double_quant) if w.role == "linear" else 4 * w.elements for w in frozen)
    width = 2 if deepspeed_mode(cfg) else weights_width(cfg)
    return sum(width * w.elements for w in frozen)


def _layer_saved(model: FtModel, cfg: FinetuneConfig, trains_linear: bool, resid: int) -> float:
    """Activation bytes one token leaves in one block for the backward (module docstring)."""
    h, f = model.hidden, model.ffn
    if model.kind == "encoder":
        per = (34 if trains_linear else 20) * h * A / 2
    else:
        per = 2 * 4 * h + A * (2 * model.q_dim + 2 * model.kv_dim) + 4 * model.heads + 3 * A * f
        if trains_linear:
            per += 2 * resid * h + 2 * A * h + A * f
    if cfg.trains_adapters:  # averaged over the blocks (MoE models may have dense first blocks)
        seen: set[tuple[int | None, str]] = set()
        extra = 0.0
        for w in model.weights:
            if w.role != "linear" or w.layer is None or w.module not in cfg.lora_targets:
                continue
            routed = w.active if w.active is not None else 1
            group = (w.layer, _SHARED_INPUT.get(w.module, w.module))
            shared = resid == 4 and group in seen
            seen.add(group)
            extra += routed * ((0 if shared else 4 * w.d_in) + 4 * cfg.lora_rank)
        per += extra / model.layers
    return per


def activation_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int) -> tuple[int, str]:
    """Bytes kept for the backward over the micro-batch's ``tokens``, and how."""
    resid = residual_width(cfg)
    layers = trained_layers(model, cfg)
    per_layer = _layer_saved(model, cfg, cfg.method in ("full", "freeze"), resid)
    if cfg.checkpointing:
        total = tokens * (len(layers) * resid * model.hidden + per_layer)
        how = (f"gradient checkpointing: {len(layers)} block inputs ({resid} x hidden B per token each) + one block's "
               f"{per_layer / model.hidden:.1f} x hidden B per token while it is recomputed")
    else:
        total = tokens * len(layers) * per_layer
        how = f"{len(layers)} blocks x {per_layer / model.hidden:.1f} x hidden B per token"
    return int(total), how + f", {tokens:,} tokens"


def logits_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int) -> int:
    out = 4 if cfg.method == "qlora" else A
    return tokens * model.head_outputs * (out + 8)


def workspace_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int) -> int:
    deq = 0
    if cfg.method == "qlora":
        deq = max((A * w.d_in * w.d_out * (w.active or 1) for w in model.weights if w.role == "linear"), default=0)
    return 2 * tokens * model.ffn * A + deq


def finetune_memory(model: FtModel, cfg: FinetuneConfig) -> Memory:
    """The job's memory on each of its GPUs (module docstring; sharding and offload: ``sharding``)."""
    train, frozen = split(model, cfg)
    n_train = sum(w.elements for w in train)
    n_frozen = sum(w.elements for w in frozen)
    work_w, grad_w, master_w, state_w = widths(cfg)
    weights = work_w * n_train
    grads = grad_w * n_train
    master = master_w * n_train
    states = optimizer_state_bytes(train, cfg.optimizer, state_w)
    base = base_bytes(frozen, cfg)
    largest = model.largest_layer_params()
    sh: Shares = shard(cfg, weights, grads, master, states, base, largest,
                       grads if cfg.sharding == "ddp" else 0, n_train)
    tokens = cfg.micro_batch * cfg.seq_len
    act, act_how = activation_bytes(model, cfg, tokens)
    logits = logits_bytes(model, cfg, tokens)
    work = workspace_bytes(model, cfg, tokens)
    copies = 0
    if cfg.weights_dtype == "fp32" and cfg.sharding in ("none", "ddp"):
        mats = [w for w in (*train, *frozen) if w.role in ("linear", "head", "adapter")]
        copies = A * sum(w.elements for w in mats)
        if model.kind == "decoder" and not any(w.role == "head" for w in model.weights):
            copies += A * model.vocab * model.hidden  # a tied head: the embedding table is the head's matrix
    temp = 0
    if cfg.optimizer == "adamw" and not deepspeed_mode(cfg) and cfg.offload == "none":
        temp = state_w * n_train // (cfg.gpus if cfg.sharding == "fsdp" else 1)
    what_train = {"full": "every weight", "freeze": f"the top {cfg.freeze_layers} blocks",
                  "lora": "the LoRA adapters (fp32)", "qlora": "the LoRA adapters (fp32)"}[cfg.method]
    mode = ("DeepSpeed mixed precision: 16-bit working copy" if deepspeed_mode(cfg) else
            f"{work_w} B/param")
    opt_basis = (f"{cfg.optimizer}" + (f" states ({state_w} B each) + fp32 master weights" if master else
                                       f" states ({state_w} B per state value)"))
    base_basis = ("NF4 linear layers (" + ("double quant" if cfg.double_quant else "fp32 absmax per 64")
                  + "); embedding, head, norms fp32 (peft prepare_model_for_kbit_training)"
                  if cfg.method == "qlora" else
                  f"{n_frozen:,} frozen parameters at {2 if deepspeed_mode(cfg) else weights_width(cfg)} B")
    parts = [
        Part("base_weights", "base weights (frozen)", sh.base_weights, base_basis if frozen else "nothing frozen"),
        Part("trainable_weights", "trainable weights", sh.trainable_weights,
             f"{n_train:,} parameters ({what_train}), {mode}"),
        Part("gradients", "gradients", sh.gradients, f"{grad_w} B per trainable parameter"),
        Part("optimizer_states", "optimizer states", sh.optimizer, opt_basis),
        Part("weight_copies", "16-bit copies / gathered layers", copies + sh.gathered,
             ("autocast's bf16 copies of the fp32 matrices, kept for the backward" if copies else "")
             + ("; " if copies and sh.gathered else "")
             + (f"{largest:,} parameters of the largest layer x 4 B gathered" if sh.gathered else "")
             or "none"),
        Part("activations", "activations", act, act_how),
        Part("logits", "logits and loss", logits,
             f"{tokens:,} tokens x {model.head_outputs:,} outputs x {(4 if cfg.method == 'qlora' else A) + 8} B"),
        Part("workspace", "workspace", work, "2 FFN-wide gradient buffers"
             + (" + the largest matrix dequantized to bf16" if cfg.method == "qlora" else "") + " (dlgpu's estimate)"),
        Part("optimizer_step", "optimizer step temporaries", temp,
             "torch AdamW foreach: one state-sized list, while activations are freed" if temp else "none"),
    ]
    static = sum(p.bytes for p in parts if p.key in ("base_weights", "trainable_weights", "gradients",
                                                      "optimizer_states", "weight_copies"))
    peak = static + max(act + logits + work, temp)
    peak_basis = (f"model states ({sh.basis}) + the larger of activations + logits + workspace and the optimizer "
                  "step's temporaries; CUDA context and fragmentation are the device's reserve")
    ds = deepspeed_estimate(cfg, model.params, largest) if cfg.method == "full" else None
    return Memory(tuple(parts), int(peak), peak_basis, sh.cpu_bytes, sh.cpu_basis, model.params, n_train, n_frozen,
                  ds)


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] with fits(n) (monotone); low - 1 where none fits."""
    if high < low or not fits(low):
        return low - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


MAX_MICRO_BATCH = 4096


def largest_micro_batch(model: FtModel, cfg: FinetuneConfig, usable: int) -> int:
    """The largest micro-batch (at ``cfg.seq_len``) whose peak fits ``usable`` bytes; 0 where none does."""
    from dataclasses import replace

    return _largest(lambda b: finetune_memory(model, replace(cfg, micro_batch=b)).peak_bytes <= usable,
                    1, MAX_MICRO_BATCH)


def largest_seq_len(model: FtModel, cfg: FinetuneConfig, usable: int) -> int:
    """The longest sequence (at ``cfg.micro_batch``, at most the model's context) whose peak fits; 0 where none."""
    from dataclasses import replace

    return _largest(lambda s: finetune_memory(model, replace(cfg, seq_len=s)).peak_bytes <= usable,
                    1, model.max_positions)
