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

Activations kept for the backward, per token and block: traced where the api hands a trace down (``traces``, keyed by
``trace_key``: ``analyze.finetune_trace`` runs the forward and the loss of the model ``dlgpu bench --task finetune``
builds, with the method applied, on fake tensors at 1 and 2 blocks and two sequence lengths and counts what
``saved_tensors_hooks`` sees, once per storage, parameters left out; the part's basis then says "traced on fake tensors
with the adapters applied (peft X, transformers Y, torch Z): N B per token per block"). Not traced: QLoRA (bitsandbytes'
4-bit kernels do not run on fake tensors), MoE models (data-dependent routing), models no workload builds, runs
without torch and nothing cached, ``--no-trace``: the formula below, with the reason in the basis. The formula (a = 2
bytes, the bf16/fp16 compute width; LLM.md: "for SwiGLU re-derive", done here from what each operation of a Hugging
Face Llama block saves with fused attention) agrees with the trace to the byte for the Llama/Qwen decoders in bf16,
fp16 and fp32 (autocast), full, freeze and LoRA (tests/test_finetune_trace.py):

- every block: each RMSNorm computes in fp32 and keeps its fp32 input (4h, twice) and its fp32 reciprocal RMS per
  row (4 B); fused attention keeps q, k, v and its output (a(2q + 2kv), q = heads x head_dim, kv = kv_heads x
  head_dim; grouped-query keys and values unexpanded) and its fp32 log-sum-exp (4 x heads); the SwiGLU keeps the gate
  output, the SiLU output and the up output (3af); RoPE's cos and sin are one per position for all blocks (not per
  block); Qwen3's RMSNorm on each head's q and k keeps their fp32 inputs (4(q + kv)) and a reciprocal per head;
- where the block's weights train (full, freeze): each linear keeps its input for the weight gradient (q/k/v and
  gate/up share the norms' outputs, ah each; o's input is the attention output, kept already; down's is the SwiGLU
  product, af) and each norm its normalized input for its weight's gradient (rh, r the residual stream's width; Qwen3's
  q and k norms a(q + kv)); under autocast (fp32 weights) every linear casts its fp32 input to bf16 itself (autocast
  caches only casts of weights), so q, k, v and gate, up keep five copies (5ah) rather than two;
- a LoRA adapter keeps its input cast to fp32 (peft casts the input to the adapter's dtype: 4 d_in; where the input
  is already fp32, adapters on the same input share it) and its rank-r intermediate (4r); under autocast its A and B
  cast their inputs to bf16, a copy each (a(d_in + r));
- BERT blocks (GELU, dropout, LayerNorm; Korthikanti et al.'s per-layer count with fused attention, no s² term,
  LLM.md): q, k, v and the attention output (4ah), the fused attention's log-sum-exp, two 1-byte dropout masks (2h),
  the LayerNorms' inputs (2ah, fp32 under autocast) and fp32 mean and rstd (ATen's CUDA LayerNorm keeps them in its
  accumulation type; its CPU kernel in bf16, which is why a CPU trace is 8 B lower), the GELU's input (af); where the
  linear layers train, their inputs too: the query/key/value input (ah, 3ah under autocast), the intermediate's (ah)
  and the output dense's (af): 34 sbh for an FFN of 4h (Korthikanti's count), 22 sbh where they are frozen (the
  attention output stays: the fused kernel keeps it).
- The residual stream is fp32 where the embedding is (QLoRA after ``prepare_model_for_kbit_training``) or autocast
  adds bf16 outputs to fp32 weights' results (``weights_dtype=fp32``): r = 4, else 2.
- Gradient checkpointing (Hugging Face's, per block): each trained block keeps only its input (rh per token) plus one
  block's activations while it is recomputed (LLM.md: "Full checkpointing: 2·s·b·h per layer plus one layer's"); the
  one block's figure is the traced one where there is a trace (traced without checkpointing).
- Logits (the formula, traced or not): at the start of the backward the fp32 log-softmax the loss keeps, its gradient
  from the loss and the gradient it passes on to the logits are alive together, 12 B per token per vocabulary entry
  (the head's output, bf16 or QLoRA's fp32, and the loss's fp32 copy of it are freed after the forward: nothing
  saves them; in the forward the three of them with the log-softmax make 10 or 8 B). LLM.md: "4·s·b·V (fp32);
  upcasts and the loss gradient multiply it". Measured on this CPU with transformers' ``ForCausalLMLoss`` on a
  151,936-entry vocabulary: 12.0 B per token per entry at 128 and 256 tokens (peak RSS over the step). A trace
  sees only what is saved: the fp32 log-softmax (4 x vocab per token) with the final norm's input, RoPE's cos/sin
  and the labels (``TracedActivations.rest_per_token``, reported beside it), not the head's output nor the loss's
  gradient, which live at the backward's start; so the part stays this formula.
- Workspace (dlgpu's estimate, not a sourced figure): two FFN-wide gradient buffers of the micro-batch alive at once in
  the MLP's backward (2 x T x f x a), and for QLoRA the largest matrix dequantized to 16 bits before its matmul.
- The optimizer step (``torch.optim.AdamW``'s default foreach implementation, a GPU's, materializes its intermediates
  as a list the size of a state, PyTorch's optimizer docs): a state's size more, at a time when the activations are
  freed; the peak takes the larger of the two. On a CPU (``cpu=True``) torch's default is the single-tensor loop,
  whose ``exp_avg_sq.sqrt() / bias_correction2_sqrt`` makes two temporaries the size of one tensor: twice the largest
  trainable tensor's state. DeepSpeed's fused Adam and bitsandbytes' 8-bit kernels need none.
- Framework overhead: the CUDA context and the allocator's fragmentation are the device's reserve
  (``results.USABLE_MEMORY_FRACTION``, the share ``dlgpu bench`` plans with): a job fits where its peak is within
  the usable memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
    """One GPU's memory by component (``parts``), its peak, the CPU memory offload needs, the parameter counts;
    where the activations came from (``activations_source``: ``traced`` or ``formula``) and the trace's figures or
    why there are none (``activations_trace``)."""

    parts: tuple[Part, ...]
    peak_bytes: int
    peak_basis: str
    cpu_bytes: int | None
    cpu_basis: str
    total_params: int
    trainable_params: int
    frozen_params: int
    deepspeed: dict[str, float] | None
    activations_source: str = "formula"
    activations_trace: dict[str, Any] | None = None

    def part(self, key: str) -> int:
        return next((p.bytes for p in self.parts if p.key == key), 0)


@dataclass(frozen=True)
class TracedActivations:
    """What autograd saves for the backward of a job's forward and loss, traced on fake tensors with the method
    applied (``analyze.finetune_trace``), in plain numbers: bytes per token per block (``per_block_per_token``),
    per token outside the blocks (``rest_per_token``: embedding, final norm, head and loss, less what the first
    block does not keep because its input needs no gradient), per block whatever the tokens (``per_block``: autocast's
    16-bit weight copies) and fixed (``fixed``). ``residual``: the fit's relative error at a point it was not fitted
    to. ``points``: (blocks, micro-batch, sequence, bytes) of every trace. ``key``: ``trace_key`` of the job.
    ``versions``: peft's, transformers' and torch's. ``seconds``: the traces' own time (importing the libraries, a few
    seconds once per process, not counted)."""

    workload: str
    key: str
    per_block_per_token: float
    rest_per_token: float
    per_block: float
    fixed: float
    residual: float
    points: tuple[tuple[int, int, int, int], ...]
    versions: str
    seconds: float

    @property
    def basis(self) -> str:
        method = self.key.split("/")[0]
        applied = {"lora": "the adapters applied", "full": "every weight trained",
                   "freeze": "the top blocks trained"}.get(method, f"method {method}")
        return f"traced on fake tensors with {applied} ({self.versions})"

    def to_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "key": self.key, "per_block_per_token": self.per_block_per_token,
                "rest_per_token": self.rest_per_token, "per_block": self.per_block, "fixed": self.fixed,
                "residual": self.residual, "points": [list(p) for p in self.points], "versions": self.versions,
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TracedActivations:
        return cls(str(d["workload"]), str(d["key"]), float(d["per_block_per_token"]), float(d["rest_per_token"]),
                   float(d["per_block"]), float(d["fixed"]), float(d["residual"]),
                   tuple((int(a), int(b), int(c), int(n)) for a, b, c, n in d["points"]), str(d["versions"]),
                   float(d["seconds"]))


Traces = Mapping[str, TracedActivations | str]
"""Traced activations by ``trace_key``, or the reason a job was not traced (api hands them down; no torch here)."""


def trace_key(cfg: FinetuneConfig) -> str:
    """What a traced activation figure depends on: the method, the adapters (rank, targets) and the width the weights
    compute in. bf16 and fp16 weights run the same operations on values of the same width, so one trace serves both
    (tests/test_finetune_trace.py checks they trace alike); fp32 weights run under autocast, another trace. The
    micro-batch, sequence, optimizer, sharding and checkpointing do not change a block's bytes per token."""
    width = "fp32-autocast" if cfg.weights_dtype == "fp32" else "16-bit"
    lora = f"/r{cfg.lora_rank}/{','.join(sorted(cfg.lora_targets))}" if cfg.trains_adapters else ""
    return f"{cfg.method}/{width}{lora}"


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
    """The blocks the backward runs through (their activations kept, or under checkpointing their inputs): all of
    them, or for ``freeze`` the top ``freeze_layers``; but with gradient checkpointing transformers makes the
    embeddings' output require a gradient (``enable_input_require_grads``), so the backward runs through the frozen
    blocks too (activation gradients only), each checkpointed (traced: ``analyze.finetune_profile``)."""
    if cfg.method == "freeze" and not cfg.checkpointing:
        return range(model.layers - cfg.freeze_layers, model.layers)
    return range(model.layers)


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
    h, f, q, kv = model.hidden, model.ffn, model.q_dim, model.kv_dim
    autocast = cfg.weights_dtype == "fp32"  # each linear layer casts an fp32 input to bf16 itself
    per: float
    if model.kind == "encoder":
        norm_in = 4 if autocast else A  # the LayerNorms' inputs: fp32 where autocast adds to the fp32 stream
        per = (4 * A * h + 2 * h + 2 * norm_in * h + A * f + 4 * model.heads + 2 * 2 * 4)
        if trains_linear:
            per += (3 if autocast else 1) * A * h + A * h + A * f
    else:
        per = 2 * (4 * h + 4) + A * (2 * q + 2 * kv) + 4 * model.heads + 3 * A * f
        if any(w.module == "attn_q_norm" for w in model.weights):  # Qwen3: RMSNorm on each head's q and k
            per += 4 * (q + kv) + 4 * (model.heads + model.kv_heads) + (A * (q + kv) if trains_linear else 0)
        if trains_linear:
            per += 2 * resid * h + (5 if autocast else 2) * A * h + A * f
    if cfg.trains_adapters:  # averaged over the blocks (MoE models may have dense first blocks)
        seen: set[tuple[int | None, str]] = set()
        extra = 0.0
        for w in model.weights:
            if w.role != "linear" or w.layer is None or w.module not in cfg.lora_targets:
                continue
            routed = w.active if w.active is not None else 1
            if autocast:  # lora_A casts its input and lora_B its input (A's output) to bf16, one copy each
                extra += routed * A * (w.d_in + cfg.lora_rank)
                continue
            group = (w.layer, _SHARED_INPUT.get(w.module, w.module))
            shared = resid == 4 and group in seen
            seen.add(group)
            extra += routed * ((0 if shared else 4 * w.d_in) + 4 * cfg.lora_rank)
        per += extra / model.layers
    return per


def activation_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int,
                     traced: TracedActivations | None = None) -> tuple[int, str]:
    """Bytes kept for the backward over the micro-batch's ``tokens``, and how: a block's bytes per token traced
    (``traced``) or from ``_layer_saved``."""
    resid = residual_width(cfg)
    layers = trained_layers(model, cfg)
    formula = _layer_saved(model, cfg, cfg.method in ("full", "freeze"), resid)
    per_layer = formula if traced is None else traced.per_block_per_token
    if traced is None:
        what = f"{per_layer / model.hidden:.1f} x hidden B per token"
    else:
        what = f"{traced.basis}: {per_layer:,.0f} B per token per block (the formula's {formula:,.0f})"
    if cfg.checkpointing:
        total = tokens * (len(layers) * resid * model.hidden + per_layer)
        how = (f"gradient checkpointing: {len(layers)} block inputs ({resid} x hidden B per token each) + one block's "
               f"activations while it is recomputed, {what}")
    else:
        total = tokens * len(layers) * per_layer
        how = f"{len(layers)} blocks x {what}" if traced is None else f"{len(layers)} blocks, each {what}"
    return int(total), how + f", {tokens:,} tokens"


def formula_per_block(model: FtModel, cfg: FinetuneConfig) -> float:
    """The formula's bytes one token leaves in one trained block (``_layer_saved``), to set beside a trace."""
    return _layer_saved(model, cfg, cfg.method in ("full", "freeze"), residual_width(cfg))


LOGITS_BYTES = 12
"""Bytes per token per output of the head at the peak of the loss's backward (module docstring)."""


def logits_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int) -> int:
    return tokens * model.head_outputs * LOGITS_BYTES


def workspace_bytes(model: FtModel, cfg: FinetuneConfig, tokens: int) -> int:
    deq = 0
    if cfg.method == "qlora":
        deq = max((A * w.d_in * w.d_out * (w.active or 1) for w in model.weights if w.role == "linear"), default=0)
    return 2 * tokens * model.ffn * A + deq


def _traced(cfg: FinetuneConfig, traces: Traces | None) -> tuple[TracedActivations | None, str | None]:
    """The trace of ``cfg``'s activations in ``traces`` (None where there is none), and the reason where none."""
    if traces is None:
        return None, None
    got = traces.get(trace_key(cfg))
    if isinstance(got, TracedActivations):
        return got, None
    return None, got or f"not traced for this job ({trace_key(cfg)})"


def finetune_memory(model: FtModel, cfg: FinetuneConfig, traces: Traces | None = None, *, cpu: bool = False) -> Memory:
    """The job's memory on each of its GPUs (module docstring; sharding and offload: ``sharding``). ``traces``: the
    activations traced on fake tensors by ``trace_key`` (or why not), handed down by the api; else the formula."""
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
    traced, untraced = _traced(cfg, traces)
    act, act_how = activation_bytes(model, cfg, tokens, traced)
    if traced is None and untraced:
        act_how += f" (formula; not traced: {untraced})"
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
        if cpu:  # the single-tensor loop: sqrt(v) and its quotient, one tensor at a time
            temp = 2 * state_w * max((w.elements // w.copies for w in train), default=0)
        else:
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
             f"{tokens:,} tokens x {model.head_outputs:,} outputs x {LOGITS_BYTES} B (the fp32 log-softmax, its "
             "gradient and the logits' gradient at the loss's backward)"),
        Part("workspace", "workspace", work, "2 FFN-wide gradient buffers"
             + (" + the largest matrix dequantized to bf16" if cfg.method == "qlora" else "") + " (dlgpu's estimate)"),
        Part("optimizer_step", "optimizer step temporaries", temp,
             ("torch AdamW on a CPU, tensor by tensor: sqrt(v) and its quotient for the largest tensor, while "
              "activations are freed" if cpu else "torch AdamW foreach: one state-sized list, while activations are "
              "freed") if temp else "none"),
    ]
    static = sum(p.bytes for p in parts if p.key in ("base_weights", "trainable_weights", "gradients",
                                                      "optimizer_states", "weight_copies"))
    peak = static + max(act + logits + work, temp)
    peak_basis = (f"model states ({sh.basis}) + the larger of activations + logits + workspace and the optimizer "
                  "step's temporaries; CUDA context and fragmentation are the device's reserve")
    ds = deepspeed_estimate(cfg, model.params, largest) if cfg.method == "full" else None
    trace_doc: dict[str, Any] | None
    if traced is not None:
        trace_doc = {**traced.to_dict(), "basis": traced.basis,
                     "formula_per_block_per_token": formula_per_block(model, cfg),
                     "formula_logits_per_token": logits_bytes(model, cfg, 1)}
    else:
        trace_doc = None if untraced is None else {"reason": untraced}
    return Memory(tuple(parts), int(peak), peak_basis, sh.cpu_bytes, sh.cpu_basis, model.params, n_train, n_frozen,
                  ds, "traced" if traced is not None else "formula", trace_doc)


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


def largest_micro_batch(model: FtModel, cfg: FinetuneConfig, usable: int, traces: Traces | None = None, *,
                        cpu: bool = False) -> int:
    """The largest micro-batch (at ``cfg.seq_len``) whose peak fits ``usable`` bytes; 0 where none does."""
    from dataclasses import replace

    return _largest(lambda b: finetune_memory(model, replace(cfg, micro_batch=b), traces, cpu=cpu).peak_bytes <= usable,
                    1, MAX_MICRO_BATCH)


def largest_seq_len(model: FtModel, cfg: FinetuneConfig, usable: int, traces: Traces | None = None, *,
                    cpu: bool = False) -> int:
    """The longest sequence (at ``cfg.micro_batch``, at most the model's context) whose peak fits; 0 where none."""
    from dataclasses import replace

    return _largest(lambda s: finetune_memory(model, replace(cfg, seq_len=s), traces, cpu=cpu).peak_bytes <= usable,
                    1, model.max_positions)
