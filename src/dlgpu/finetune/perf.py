"""The time of one optimizer step of a fine-tuning job, through dlgpu's calibrated roofline. No torch here.

The step is an operator profile (``results.OpProfile``), one micro-batch of ``T = micro_batch x seq_len`` tokens
repeated ``grad_accum`` times and one optimizer step, timed by ``predict.roofline.predict_step`` with the shipped
calibration: each matrix product carries its GEMM shape (``OpRecord.gemm``), so the wave/tile utilization over the
SMs, the fitted efficiencies per unit, operator group and generation, the power limit and the host's dispatch time
apply as to a traced workload.

Traced where it can be (``step_time``'s ``traced``, handed down by the api from ``analyze.finetune_profile``): the
micro-batches' forward, loss and backward traced on fake tensors, the bench's model with the method applied (the
adapters' matmuls as peft runs them, a frozen weight's backward with its activation gradient only, the recomputation
``torch.utils.checkpoint`` runs, gradients accumulated), operator by operator as eager PyTorch dispatches them on a
GPU (fused attention) or on a CPU; the optimizer step stays this module's (``optimizer_records``). Written out
(``step_profile``) where it is not: QLoRA (bitsandbytes' 4-bit kernels do not run on fake tensors), mixture-of-experts
models, a model no workload builds, ``--no-trace``, torch missing with nothing cached; the basis says which and why
(``StepTime.profile_source``: ``traced`` or ``formula``). What the written-out profile holds:

- forward: every linear layer as a GEMM (T x d_out x d_in; an MoE expert gets its share T x k / E of the tokens),
  fused causal attention (2 x b x heads x s² x head_dim FLOPs, half of the full 4bs²·heads·hd), norms, RoPE, the
  SwiGLU and residual adds as memory-bound operators, the output head and the loss over fp32 logits;
- backward: the activation gradient of every layer (dX = dY W: the same FLOPs as its forward); a weight gradient
  (dW = dYᵀ X) only for trainable weights, so a frozen base (LoRA, QLoRA, the frozen blocks of ``freeze``) costs no
  weight-gradient GEMMs; attention's backward at 2.5 x its forward FLOPs (FlashAttention-2: five matmuls for two);
  memory-bound operators at twice their forward traffic (dlgpu's estimate);
- LoRA: per adapted matrix, the input cast to the adapters' fp32 (peft), x A (T x r x d_in) and (xA) B (T x d_out x
  r), the scaled add; in the backward dB, dA and the two products that carry the gradient to the input. The adapters
  are fp32 (peft) and run as fp32 GEMMs unless ``weights_dtype=fp32`` puts the step under autocast;
- QLoRA: before each use of a 4-bit matrix (forward, backward, recomputation) bitsandbytes dequantizes it to bf16
  (reads 0.5 B/param and its absmax, writes 2 B/param), then a bf16 GEMM; the head is fp32 after
  ``prepare_model_for_kbit_training`` and runs as an fp32 GEMM;
- ``weights_dtype=fp32`` (autocast): each matrix cast to bf16 once per forward;
- gradient checkpointing: each block the backward runs through computed again during the backward, up to the last
  tensor the backward needs (``torch.utils.checkpoint`` stops there: a decoder's ``down_proj`` product is not
  recomputed unless LoRA adapts it); under method freeze the backward runs through the frozen blocks too
  (transformers makes the embeddings' output require a gradient), computing their activation gradients only;
- the optimizer step over the trainable parameters (on 1/N of them under ZeRO/FSDP): torch's foreach AdamW makes
  eight passes over the states (dlgpu's count of its kernels' reads and writes: 18 state + 3 gradient values per
  parameter), DeepSpeed's fused Adam one (fp32 master, m, v read and written, the 16-bit copy written), bitsandbytes'
  8-bit one, SGD's momentum three.

Where the two differ for a dense model (``tests/test_finetune_profile.py`` accounts for it): the trace's attention
FLOPs are twice these for a causal decoder (torch's FLOP counter ignores ``is_causal``, as in every traced profile
the calibration was fitted to); the lowest trained block of a LoRA or freeze job computes no input gradient when its
input needs none (written out here: it does); and the trace's memory-bound operators are eager PyTorch's, unfused
(RMSNorm in five fp32 operators, RoPE's halves, casts), more bytes and kernels than the fused estimates here.

Added outside the roofline (``sharding``): collectives over the catalog's interconnect, offload transfers over the
PCIe host link and, with the optimizer offloaded, DeepSpeed's CPU Adam over every trainable parameter on the host
CPU (``sharding.HOST_CPU``, assumed), bound by its memory bandwidth at the calibration's CPU memory efficiency."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.predict.roofline import Calibration, precision_reason, predict_step
from dlgpu.results import OpProfile, OpRecord

from .config import FinetuneConfig
from .memory import nf4_bytes, residual_width, split, trained_layers
from .model import FtModel, Weight
from .sharding import HOST_CPU, collectives, deepspeed_mode, offload_transfer

A = 2
_TORCH = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
ATTENTION_BACKWARD = 2.5
"""FlashAttention-2's backward runs five matmuls where its forward runs two (Dao 2023, arXiv:2307.08691 §3.1)."""


def compute_precision(cfg: FinetuneConfig) -> str:
    """The precision the matmuls run in: fp16 for fp16 weights, else bf16 (fp32 weights: bf16 autocast)."""
    return "fp16" if cfg.weights_dtype == "fp16" else "bf16"


class _Ops:
    """Operator records accumulated by signature (equal calls counted together)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[object, ...], int] = defaultdict(int)

    def gemm(self, op: str, phase: str, dtype: str, m: int, n: int, k: int, count: int = 1, width: int = A,
             weight_bytes: float | None = None, batch: int = 1) -> None:
        if m <= 0 or n <= 0 or k <= 0 or count <= 0:
            return
        read = batch * m * k * width + (batch * k * n * width if weight_bytes is None else weight_bytes)
        key = (op, "matmul", phase, dtype, 2.0 * batch * m * n * k, float(read), float(batch * m * n * width), 1,
               (batch, m, n, k))
        self.calls[key] += count

    def attention(self, phase: str, dtype: str, b: int, s: int, heads: int, hd: int, q: int, kv: int, causal: bool,
                  count: int) -> None:
        flops = 4.0 * b * heads * s * s * hd * (0.5 if causal else 1.0)
        tokens = b * s
        read, written = tokens * (q + 2 * kv) * A, tokens * q * A
        if phase == "backward":
            flops *= ATTENTION_BACKWARD
            read, written = read + 2 * written, read
        key = ("scaled_dot_product_attention", "attention", phase, dtype, flops, float(read), float(written), 1,
               (b * heads, s, s, hd))
        self.calls[key] += count

    def memory(self, op: str, kind: str, phase: str, dtype: str, read: float, written: float, count: int = 1,
               launches: int = 1) -> None:
        if count <= 0:
            return
        # about one FLOP per value written (traced elementwise operators count so)
        key = (op, kind, phase, dtype, written / A, float(read), float(written), launches, None)
        self.calls[key] += count

    def records(self, repeat: int = 1, optimizer: tuple[OpRecord, ...] = ()) -> tuple[OpRecord, ...]:
        out = [OpRecord(op=k[0], kind=k[1], phase=k[2], dtype=k[3], flops=k[4], bytes_read=k[5],  # type: ignore[arg-type]
                        bytes_written=k[6], count=c * repeat, launches=k[7], gemm=k[8])  # type: ignore[arg-type]
               for k, c in self.calls.items()]
        return (*out, *optimizer)


def _tokens(w: Weight, tokens: int) -> int:
    """Tokens through one copy of a weight: all of them, or an expert's share of the routed ones."""
    if w.copies > 1 and w.active:
        return max(1, math.ceil(tokens * w.active / w.copies))
    return tokens


def _block_forward(ops: _Ops, model: FtModel, cfg: FinetuneConfig, layer: int, phase: str, dtype: str,
                   adapter_dtype: str, recompute: bool = False) -> None:
    """One block's forward (``phase`` "forward"); ``recompute``: its recomputation under checkpointing, which torch's
    non-reentrant checkpoint stops once the tensors the backward needs are back, before a decoder's ``down_proj``
    (its input is the last thing saved) unless LoRA adapts it (its adapters' inputs come after the base product)."""
    b, s = cfg.micro_batch, cfg.seq_len
    t, h, resid = b * s, model.hidden, residual_width(cfg)
    stop_before = (recompute and model.kind == "decoder"
                   and not (cfg.trains_adapters and "down_proj" in cfg.lora_targets))
    for w in model.weights:
        if w.layer != layer or w.role != "linear":
            continue
        if stop_before and w.module == "down_proj":
            continue
        m = _tokens(w, t)
        n_el = w.d_in * w.d_out
        if cfg.method == "qlora":
            ops.memory("dequantize_4bit", "elementwise", phase, dtype, nf4_bytes(Weight("", 0, "linear", w.d_in,
                       w.d_out), cfg.double_quant), A * n_el, count=w.copies)
        elif cfg.weights_dtype == "fp32":
            ops.memory("autocast_cast", "copy", phase, dtype, 4 * n_el, A * n_el, count=w.copies)
        ops.gemm(w.module, phase, dtype, m, w.d_out, w.d_in, count=w.copies)
        if cfg.trains_adapters and w.module in cfg.lora_targets:
            r = cfg.lora_rank
            aw = 4 if adapter_dtype == "float32" else A
            if aw == 4 and resid == 2:
                ops.memory("lora_cast_input", "copy", phase, adapter_dtype, A * m * w.d_in, 4 * m * w.d_in,
                           count=w.copies)
            ops.gemm(f"{w.module}.lora_A", phase, adapter_dtype, m, r, w.d_in, count=w.copies, width=aw)
            ops.gemm(f"{w.module}.lora_B", phase, adapter_dtype, m, w.d_out, r, count=w.copies, width=aw)
            ops.memory("lora_scale_add", "elementwise", phase, adapter_dtype, (aw + A) * m * w.d_out,
                       (aw + A) * m * w.d_out, count=w.copies, launches=3)
    causal = model.kind == "decoder"
    ops.attention(phase, dtype, b, s, model.heads, model.head_dim, model.q_dim, model.kv_dim, causal, 1)
    # norms (fp32 inside), RoPE on q and k, the SwiGLU (or GELU), residual adds: memory-bound
    ops.memory("norm", "norm", phase, dtype, 3.0 * t * h * (resid + 4), t * h * (resid + 4), count=2, launches=6)
    if causal:
        ops.memory("rope", "elementwise", phase, dtype, 3.0 * t * (model.q_dim + model.kv_dim) * A,
                   2.0 * t * (model.q_dim + model.kv_dim) * A, launches=8)
    f = model.ffn
    ops.memory("swiglu" if model.gated else "gelu", "elementwise", phase, dtype,
               (2 if model.gated else 1) * t * f * A, t * f * A, launches=2 if model.gated else 1)
    ops.memory("residual_add", "elementwise", phase, dtype, 2.0 * t * h * resid, t * h * resid, count=2)


def _block_backward(ops: _Ops, model: FtModel, cfg: FinetuneConfig, layer: int, dtype: str, adapter_dtype: str,
                    trainable: set[tuple[str, int | None]]) -> None:
    b, s = cfg.micro_batch, cfg.seq_len
    t, h, resid = b * s, model.hidden, residual_width(cfg)
    for w in model.weights:
        if w.layer != layer or w.role != "linear":
            continue
        m = _tokens(w, t)
        n_el = w.d_in * w.d_out
        if cfg.method == "qlora":
            ops.memory("dequantize_4bit", "elementwise", "backward", dtype, nf4_bytes(Weight("", 0, "linear", w.d_in,
                       w.d_out), cfg.double_quant), A * n_el, count=w.copies)
        ops.gemm(f"{w.module}.grad_input", "backward", dtype, m, w.d_in, w.d_out, count=w.copies)
        if (w.module, w.layer) in trainable:
            ops.gemm(f"{w.module}.grad_weight", "backward", dtype, w.d_out, w.d_in, m, count=w.copies)
        if cfg.trains_adapters and w.module in cfg.lora_targets:
            r = cfg.lora_rank
            aw = 4 if adapter_dtype == "float32" else A
            ops.gemm(f"{w.module}.lora_B.grad_weight", "backward", adapter_dtype, w.d_out, r, m, count=w.copies,
                     width=aw)
            ops.gemm(f"{w.module}.lora_B.grad_input", "backward", adapter_dtype, m, r, w.d_out, count=w.copies,
                     width=aw)
            ops.gemm(f"{w.module}.lora_A.grad_weight", "backward", adapter_dtype, r, w.d_in, m, count=w.copies,
                     width=aw)
            ops.gemm(f"{w.module}.lora_A.grad_input", "backward", adapter_dtype, m, w.d_in, r, count=w.copies,
                     width=aw)
            ops.memory("lora_grad_add", "elementwise", "backward", adapter_dtype, 2.0 * aw * m * w.d_in,
                       aw * m * w.d_in, count=w.copies, launches=2)
    causal = model.kind == "decoder"
    ops.attention("backward", dtype, b, s, model.heads, model.head_dim, model.q_dim, model.kv_dim, causal, 1)
    ops.memory("norm_backward", "norm", "backward", dtype, 6.0 * t * h * (resid + 4), 2.0 * t * h * (resid + 4),
               count=2, launches=10)
    if causal:
        ops.memory("rope_backward", "elementwise", "backward", dtype, 6.0 * t * (model.q_dim + model.kv_dim) * A,
                   4.0 * t * (model.q_dim + model.kv_dim) * A, launches=8)
    f = model.ffn
    ops.memory("swiglu_backward" if model.gated else "gelu_backward", "elementwise", "backward", dtype,
               (4 if model.gated else 2) * t * f * A, (2 if model.gated else 1) * t * f * A, launches=4)
    ops.memory("residual_grad", "elementwise", "backward", dtype, 2.0 * t * h * resid, t * h * resid, count=2)


def state_width(cfg: FinetuneConfig) -> int:
    """Bytes of an optimizer state value (torch's optimizers: the trainable parameter's dtype)."""
    return 4 if cfg.trains_adapters or cfg.weights_dtype == "fp32" else A


def _optimizer_bytes(cfg: FinetuneConfig, optimizer: str | None = None) -> tuple[int, str]:
    """(bytes read + written per trainable parameter by the optimizer step, its name in the profile)."""
    if deepspeed_mode(cfg):
        return 4 * 4 + 3 * 4 + 2, "deepspeed_fused_adam"
    s = g = state_width(cfg)
    return {"adamw": (18 * s + 3 * g, "adamw_foreach"), "adamw8bit": (2 * s + g + 4 + 4, "adamw8bit"),
            "sgd": (5 * s + g, "sgd_foreach"), "adafactor": (10 * s + 2 * g, "adafactor")}[optimizer or cfg.optimizer]


def probed_optimizer_s(gpu: GpuSpec, cfg: FinetuneConfig, params: int) -> tuple[float | None, str]:
    """The optimizer step on this machine's CPU from its probed torch AdamW rate (``dlgpu probe``: one AdamW step
    over a tensor beyond the cache, per dtype), or (None, "") where there is none: AdamW at the probed ns per
    parameter of the states' dtype (fp16 at bf16's: same width); another optimizer scaled by its bytes per parameter
    against AdamW's (``_optimizer_bytes``). Not for DeepSpeed or offloaded optimizers (they are not torch's)."""
    measured = getattr(gpu, "measured", None)
    rates = getattr(measured, "optimizer_params_per_s", None) or {}
    if gpu.kind != "cpu" or deepspeed_mode(cfg) or cfg.offload != "none" or params == 0:
        return None, ""
    dtype = "fp32" if state_width(cfg) == 4 else "bf16"
    rate = rates.get(dtype)
    if not rate or measured is None:
        return None, ""
    ratio = _optimizer_bytes(cfg)[0] / _optimizer_bytes(cfg, "adamw")[0]
    scaled = "" if cfg.optimizer == "adamw" else (f" x {ratio:.2f} ({cfg.optimizer}'s bytes per parameter against "
                                                   "AdamW's)")
    return params / rate * ratio, (f"optimizer step: {params:,} parameters x {1e9 / rate:.2f} ns ({dtype} torch AdamW "
                                   f"step probed on this CPU, {measured.source}){scaled}")


def _optimizer(model: FtModel, cfg: FinetuneConfig, train: list[Weight]) -> tuple[OpRecord, ...]:
    """The optimizer step's records (module docstring), on this GPU's share of the trainable parameters."""
    if cfg.offload != "none":
        return ()
    n = sum(w.elements for w in train)
    if deepspeed_mode(cfg) or cfg.sharding == "fsdp":
        n = math.ceil(n / cfg.gpus)
    if n == 0:
        return ()
    per, what = _optimizer_bytes(cfg)
    tensors = len(train)
    launches = 8 * max(1, math.ceil(tensors / 32))
    return (OpRecord(op=what, kind="optimizer", phase="optimizer", dtype="float32", flops=12.0 * n,
                     bytes_read=0.6 * per * n, bytes_written=0.4 * per * n, count=1, launches=launches),)


def optimizer_records(model: FtModel, cfg: FinetuneConfig) -> tuple[OpRecord, ...]:
    """The optimizer step's records on this GPU's share of the trainable parameters (module docstring): what a traced
    step profile (``analyze.finetune_profile``) adds to its traced micro-batches."""
    return _optimizer(model, cfg, split(model, cfg)[0])


StepProfiles = Callable[[FtModel, FinetuneConfig, str], "OpProfile | str"]
"""The traced step profile of a job on a target (``trace_target``: "gpu" or "cpu"), or why there is none: the seam the
api hands ``predict``/``advise`` (``analyze.profiles.finetune_step_profile``, cached: a warm cache needs no torch)."""


def trace_target(device: GpuSpec) -> str:
    """Whose dispatch a traced profile follows on ``device``: a CPU's, else a GPU's (fused attention)."""
    return "cpu" if device.kind == "cpu" else "gpu"


def traced_profile(profiles: StepProfiles | None, model: FtModel, cfg: FinetuneConfig,
                   device: GpuSpec) -> OpProfile | str | None:
    """``cfg``'s traced step profile on ``device`` from ``profiles`` (or why there is none); None without a source."""
    return None if profiles is None else profiles(model, cfg, trace_target(device))


def step_profile(model: FtModel, cfg: FinetuneConfig) -> OpProfile:
    """The operator profile of one optimizer step on one GPU (module docstring)."""
    dtype = _TORCH[compute_precision(cfg)]
    adapter_dtype = dtype if cfg.weights_dtype == "fp32" else "float32"
    train, _ = split(model, cfg)
    trainable = {(w.module, w.layer) for w in train} if not cfg.trains_adapters else set()
    layers = set(trained_layers(model, cfg))
    t, h, resid = cfg.micro_batch * cfg.seq_len, model.hidden, residual_width(cfg)
    ops = _Ops()
    emb_w = 4 if cfg.method == "qlora" or cfg.weights_dtype == "fp32" else A
    ops.memory("embedding", "embedding", "forward", dtype, t * h * emb_w, t * h * resid)
    for i in range(model.layers):
        _block_forward(ops, model, cfg, i, "forward", dtype, adapter_dtype)
    head = next((w for w in model.weights if w.role == "head"), None)
    head_in, head_out = h, model.head_outputs
    head_dtype = "float32" if cfg.method == "qlora" else dtype
    hw = 4 if head_dtype == "float32" else A
    ops.memory("final_norm", "norm", "forward", dtype, 3.0 * t * h * (resid + 4), t * h * (resid + 4), launches=6)
    ops.gemm("lm_head" if model.kind == "decoder" else "qa_outputs", "forward", head_dtype, t, head_out, head_in,
             width=hw)
    ops.memory("cross_entropy", "softmax", "forward", "float32", t * head_out * (hw + 8), t * head_out * 8,
               launches=4)
    # backward
    ops.memory("cross_entropy_backward", "softmax", "backward", "float32", t * head_out * 8, t * head_out * (4 + hw),
               launches=3)
    ops.gemm("head.grad_input", "backward", head_dtype, t, head_in, head_out, width=hw)
    if (head is not None and (head.module, head.layer) in trainable) or (head is None and cfg.method == "full"):
        ops.gemm("head.grad_weight", "backward", head_dtype, head_out, head_in, t, width=hw)
    ops.memory("final_norm_backward", "norm", "backward", dtype, 6.0 * t * h * (resid + 4), 2.0 * t * h * (resid + 4),
               launches=10)
    for i in sorted(layers, reverse=True):
        if cfg.checkpointing:
            _block_forward(ops, model, cfg, i, "forward", dtype, adapter_dtype, recompute=True)
        _block_backward(ops, model, cfg, i, dtype, adapter_dtype, trainable)
    if cfg.method == "full":  # the embedding's gradient: a dense table, scattered into
        g = 2 if deepspeed_mode(cfg) else (4 if cfg.weights_dtype == "fp32" else A)
        ops.memory("embedding_backward", "embedding", "backward", dtype, t * h * A, model.vocab * h * g + t * h * g,
                   launches=2)
    records = ops.records(cfg.grad_accum, _optimizer(model, cfg, train))
    return OpProfile(workload=f"{model.id} finetune {cfg.method}", task="train", precision=compute_precision(cfg),
                     batch_size=cfg.micro_batch, params={"seq_len": cfg.seq_len, "grad_accum": cfg.grad_accum,
                                                         "method": cfg.method},
                     parameters=model.params, ops=records)


@dataclass(frozen=True)
class StepTime:
    step_time_s: float
    compute_s: float  # the roofline's time of the GPU work
    collectives_s: float | None
    offload_s: float | None
    cpu_optimizer_s: float
    bound: dict[str, float]
    flops: float
    tensor_core_share: float
    basis: str
    collectives_basis: str
    offload_basis: str
    complete: bool  # False where a link the step needs is unknown: the time is then a lower bound
    profile_source: str = "formula"  # "traced" (on fake tensors) or "formula" (written out: ``step_profile``)
    profile_basis: str = ""  # how the profile was made, or why it was not traced


def _cpu_adam_s(catalog: Catalog, cal: Calibration, params: int) -> tuple[float | None, str]:
    """DeepSpeed CPU Adam over ``params`` on the assumed host: 30 B per parameter (fp32 master, gradient, m, v read;
    master, m, v written; the 16-bit copy written) at the host's memory bandwidth x the calibration's CPU memory
    efficiency."""
    try:
        host = catalog.cpu(HOST_CPU)
    except (BadInput, KeyError):
        return None, f"the host CPU {HOST_CPU} is not in the catalog"
    bw = host.memory_bandwidth_bytes_per_s
    if not bw:
        return None, f"the catalog has no memory bandwidth for {host.name}"
    e = cal.memory_efficiency("cpu", "optimizer")
    return 30.0 * params / (bw * e), (f"CPU Adam: 30 B x {params:,} parameters at {e:.0%} of {host.name}'s "
                                      f"{bw / 1e9:.0f} GB/s (the host CPU assumed: an NVIDIA DGX H100's)")


def step_time(model: FtModel, cfg: FinetuneConfig, gpu: GpuSpec, cal: Calibration, catalog: Catalog,
              traced: OpProfile | str | None = None) -> StepTime:
    """One optimizer step on ``gpu`` (a catalog GPU, or a CPU as ``roofline.cpu_as_device`` makes it). ``traced``:
    the step's profile traced on fake tensors (``StepProfiles``), used in place of ``step_profile``'s; or why there is
    none (the written-out profile then, with the reason in the basis)."""
    prec = compute_precision(cfg)
    why = precision_reason(gpu, prec)
    if why:
        raise BadInput(f"{gpu.id}: {why}; fine-tune it with --set weights_dtype=fp16", param="hardware")
    if isinstance(traced, OpProfile):
        prof, source = traced, "traced"
        n = sum(o.count for o in prof.ops)
        how = str(prof.params.get("traced_basis") or f"traced on fake tensors ({n:,} operators per step)")
    else:
        prof, source = step_profile(model, cfg), "formula"
        how = f"written-out profile (not traced: {traced or 'no trace asked for'})"
    pred = predict_step(prof, gpu, prec, cal)
    train, _ = split(model, cfg)
    n_train = sum(w.elements for w in train)
    compute_s = pred.step_time_s
    opt_s, opt_basis = probed_optimizer_s(gpu, cfg, n_train)
    if opt_s is not None:  # the probed rate replaces the calibrated optimizer record
        calibrated = sum(t * op.count for t, op in zip(pred.op_seconds, prof.ops, strict=True)
                         if op.kind == "optimizer")
        compute_s = compute_s - calibrated + opt_s
    all16 = 2 * model.params
    grad_w = 2 if deepspeed_mode(cfg) else (4 if cfg.trains_adapters or cfg.weights_dtype == "fp32" else 2)
    comm = collectives(cfg, catalog, gpu, n_train, all16, grad_w)
    off_s, off_basis = offload_transfer(cfg, catalog, gpu, n_train, all16)
    cpu_s, cpu_basis = (0.0, "") if cfg.offload == "none" else _cpu_adam_s(catalog, cal, n_train)
    total = compute_s + (comm.time_s or 0.0) + (off_s or 0.0) + (cpu_s or 0.0)
    complete = comm.time_s is not None and off_s is not None and cpu_s is not None
    where = "this CPU" if gpu.kind == "cpu" else gpu.id
    basis = (f"per-operator roofline on {where} with the shipped calibration (fitted efficiencies per unit, "
             f"operator group and generation, wave/tile utilization of each GEMM shape): {prof.flops / 1e12:.2f} "
             f"TFLOP per step ({cfg.grad_accum} micro-batch(es) of {cfg.micro_batch} x {cfg.seq_len} tokens"
             + (", recomputation" if cfg.checkpointing else "")
             + (", 4-bit dequantization" if cfg.method == "qlora" else "") + f"); {how}"
             + (f"; {cpu_basis}" if cpu_basis else "") + (f"; {opt_basis}" if opt_basis else ""))
    return StepTime(total, compute_s, comm.time_s, off_s, cpu_s or 0.0, pred.bound, prof.flops,
                    pred.tensor_core_share, basis, comm.basis, off_basis, complete, source, how)
