"""The torch side of ``dlgpu bench --task finetune``: a workload's model built as the workload builds it (random
weights, nothing downloaded), with a fine-tuning method applied, and one optimizer step of it.

The job comes in as plain values (``FinetuneConfig.to_dict()`` of ``dlgpu.finetune.config``, which is layer 2 and
parsed by ``measure``): ``method``, ``lora_rank``, ``lora_alpha``, ``lora_targets``, ``double_quant``,
``weights_dtype``, ``seq_len``, ``freeze_layers``, ``optimizer``, ``checkpointing``, ``grad_accum``.

Methods:

- ``full``: every parameter trains;
- ``freeze``: only the top ``freeze_layers`` decoder/encoder layers train, with the final norm (decoders) or the
  task head (BERT's span classifier, which starts random);
- ``lora``: peft ``get_peft_model(model, LoraConfig(r, lora_alpha, target_modules, lora_dropout=0, bias="none",
  task_type))`` (``task_type`` CAUSAL_LM, or QUESTION_ANS for BERT, which also trains a copy of the span head as
  peft does for a task head); the adapters in fp32, peft's default (``autocast_adapter_dtype=True``);
- ``qlora``: the linear layers of the decoder/encoder layers (not the output head, as transformers'
  bitsandbytes integration leaves it) become ``bitsandbytes.nn.Linear4bit``, NF4 with blocks of 64, double
  quantization as asked, compute dtype = the weights' dtype (bf16 or fp16), the random weights quantized from the
  model built in that dtype; then LoRA as above. Of peft's ``prepare_model_for_kbit_training`` the steps that
  matter for memory are kept: the base is frozen, every non-4-bit parameter (embeddings, norms, head) is upcast to
  fp32, and checkpointing is enabled if asked (peft's own default turns it on: here it is ``--set
  checkpointing``).

Weights: stored in ``weights_dtype``. bf16 and fp16 are "true" half precision (no autocast, no gradient scaler); fp32
weights train under bf16 autocast (fp16 with a gradient scaler where the device has no bf16): mixed precision with
fp32 master weights, as ``finetune.config.SETTINGS`` defines it. The harness supplies the autocast context.

The step (``train_step``): ``grad_accum`` micro-batches of forward + loss + backward (decoders: causal-LM cross
entropy on random token ids of ``seq_len``; BERT: its SQuAD span loss), then ``optimizer.step()`` and
``zero_grad(set_to_none=True)``. The first step records the bytes of gradients (before the optimizer step) and of
optimizer state (after it): ``breakdown``."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

import torch
from torch import nn

from ..base import StepContext, WorkloadInstance
from ..finetune import DECODER, ENCODER, encoder_targets, finetune_kind
from ..spec import WorkloadSpec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LR = 1e-4
"""The learning rate of every optimizer here (it changes no cost)."""
NF4_BLOCK = 64  # bitsandbytes' default 4-bit block size, the one QLoRA uses


class FinetuneUnavailable(RuntimeError):
    """The configuration cannot run here (bitsandbytes missing or failing on this device): the reason."""


# --------------------------------------------------------------------------------------------------------
# Libraries
# --------------------------------------------------------------------------------------------------------


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def import_bitsandbytes() -> Any:
    """bitsandbytes, imported without looking anything up on the Hugging Face Hub: on CPUs with AVX-512 bf16 its
    CPU backend asks the ``kernels`` package for a hub kernel at import time (falling back to its own C kernels when
    that fails). dlgpu downloads nothing: ``kernels`` is hidden during that import (so the lookup never starts) and
    the fallback's warning is quiet. peft imports bitsandbytes too: call this before importing peft."""
    if "bitsandbytes" in sys.modules:
        return sys.modules["bitsandbytes"]
    hide = "kernels" not in sys.modules
    quiet = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    if hide:
        sys.modules["kernels"] = None  # type: ignore[assignment]  # "from kernels import ..." raises ImportError
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise FinetuneUnavailable(f"needs bitsandbytes (pip install bitsandbytes): {exc}") from None
    finally:
        quiet.setLevel(level)
        if hide:
            sys.modules.pop("kernels", None)
    return bnb


def _import_peft() -> Any:
    """peft (after bitsandbytes, where it is installed: see ``import_bitsandbytes``)."""
    with contextlib.suppress(FinetuneUnavailable):
        import_bitsandbytes()
    import peft

    return peft


def bitsandbytes_unavailable(device: torch.device, what: str, dtype: torch.dtype = torch.bfloat16) -> str | None:
    """Why bitsandbytes cannot run ``what`` (``nf4``: a 4-bit NF4 linear layer's forward and backward in
    ``dtype``; ``adamw8bit``: one AdamW8bit step) on ``device``; None when it can. Tried on a tiny layer."""
    try:
        bnb = import_bitsandbytes()
        if what == "nf4":
            layer = _linear4bit(bnb, nn.Linear(128, 64, bias=False, device=device, dtype=dtype), dtype, True)
            x = torch.randn(2, 128, device=device, dtype=dtype, requires_grad=True)
            layer(x).float().sum().backward()
            assert x.grad is not None and bool(torch.isfinite(x.grad).all())
        else:
            p = nn.Parameter(torch.randn(4096, device=device, dtype=dtype))
            opt = bnb.optim.AdamW8bit([p], lr=LR)
            p.grad = torch.ones_like(p)
            opt.step()
    except FinetuneUnavailable as exc:
        return str(exc)
    except Exception as exc:  # the library exists but cannot run this here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (f"bitsandbytes {version('bitsandbytes')} cannot run {what} on {device.type} here "
                f"({type(exc).__name__}: {first})")[:400]
    return None


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, the ModuleList of decoder/encoder layers) of a transformers model: the longest ModuleList."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ValueError(f"{type(model).__name__}: no stack of layers found")
    return max(lists, key=lambda nm: len(nm[1]))


def _linear4bit(bnb: Any, lin: nn.Linear, dtype: torch.dtype, double_quant: bool) -> nn.Module:
    """``lin`` as a bitsandbytes NF4 ``Linear4bit`` on its device, its weights quantized from ``lin``'s."""
    device = lin.weight.device
    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None, compute_dtype=dtype,
                          compress_statistics=double_quant, quant_type="nf4", quant_storage=torch.uint8,
                          device="meta")
    q.weight = bnb.nn.Params4bit(lin.weight.data.to(dtype), requires_grad=False, quant_type="nf4",
                                 compress_statistics=double_quant, blocksize=NF4_BLOCK,
                                 quant_storage=torch.uint8)
    if lin.bias is not None:
        q.bias = nn.Parameter(lin.bias.data.to(dtype), requires_grad=False)
    return q.to(device)  # Params4bit quantizes when moved to its (non-meta) device


def quantize_nf4(model: nn.Module, dtype: torch.dtype, double_quant: bool) -> int:
    """Replace every ``nn.Linear`` inside the layer stack by NF4 ``Linear4bit`` (one at a time, so that only one
    layer's weights exist twice); the output head stays. Returns how many were replaced."""
    bnb = import_bitsandbytes()
    _, stack = layer_stack(model)
    count = 0
    for layer in stack:
        for name, lin in list(layer.named_modules()):
            if type(lin) is not nn.Linear:
                continue
            parent_name, _, child = name.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            setattr(parent, child, _linear4bit(bnb, lin, dtype, double_quant))
            del lin
            count += 1
    return count


def _enable_checkpointing(model: nn.Module) -> None:
    """transformers' activation (gradient) checkpointing, non-reentrant; it also makes the embeddings' output
    require grad where the model needs it (peft's ``enable_input_require_grads``)."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)  # type: ignore[operator]


def lora_target_modules(model: nn.Module, kind: str, targets: tuple[str, ...]) -> list[str] | tuple[str, ...]:
    """peft's ``target_modules``: the decoder's module names as given; on a BERT encoder the full names of its layers
    doing each target's job (``workloads.finetune.ENCODER_TARGETS``)."""
    if kind == DECODER:
        return tuple(targets)
    stack_name, _ = layer_stack(model)
    patterns = [p for p in encoder_targets(targets).values() if p is not None]
    if not patterns:
        raise ValueError(f"lora_targets {','.join(targets)}: BERT has no such layer (it has q_proj, k_proj, v_proj, "
                         "o_proj, up_proj, down_proj equivalents)")
    rx = re.compile(rf"{re.escape(stack_name)}\.\d+\.(?:{'|'.join(patterns)})$")
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and rx.search(n)]
    return found


def apply_method(model: nn.Module, kind: str, job: Mapping[str, Any], dtype: torch.dtype) -> nn.Module:
    """``model`` with the job's method applied: which parameters train, adapters added, the base quantized."""
    method = str(job["method"])
    if method == "qlora":
        quantize_nf4(model, dtype, bool(job["double_quant"]))
        # as peft's prepare_model_for_kbit_training: every parameter that is not 4-bit (embeddings, norms, the
        # head) is upcast to fp32 (peft/utils/other.py); its checkpointing default is left to --set checkpointing
        for p in model.parameters():
            if p.dtype in (torch.float16, torch.bfloat16) and p.__class__.__name__ != "Params4bit":
                p.data = p.data.float()
    if bool(job["checkpointing"]):
        _enable_checkpointing(model)
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method == "freeze":
        for p in model.parameters():
            p.requires_grad_(False)
        stack_name, stack = layer_stack(model)
        k = min(int(job["freeze_layers"]), len(stack))
        for layer in list(stack)[len(stack) - k:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for extra in _trained_with_top_layers(model, kind, stack_name):
            for p in extra.parameters():
                p.requires_grad_(True)
        return model
    peft = _import_peft()
    config = peft.LoraConfig(r=int(job["lora_rank"]), lora_alpha=int(job["lora_alpha"]),
                        target_modules=lora_target_modules(model, kind, tuple(job["lora_targets"])),
                        lora_dropout=0.0, bias="none",
                        task_type=peft.TaskType.CAUSAL_LM if kind == DECODER else peft.TaskType.QUESTION_ANS)
    with warnings.catch_warnings():  # peft asks transformers 5 by a name it deprecated (is_gradient_checkpointing)
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*")
        # peft's default (autocast_adapter_dtype=True): adapters of a bf16/fp16 model are kept in fp32
        peft_model: nn.Module = peft.get_peft_model(model, config)
    return peft_model


def _trained_with_top_layers(model: nn.Module, kind: str, stack_name: str) -> list[nn.Module]:
    """What method freeze trains besides the top layers: a decoder's final norm (the module right after the
    stack: ``model.norm``); BERT's task head (``qa_outputs``, random at the start of fine-tuning)."""
    if kind == ENCODER:
        head = getattr(model, "qa_outputs", None)
        return [head] if isinstance(head, nn.Module) else []
    parent_name = stack_name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    norm = getattr(parent, "norm", None)
    return [norm] if isinstance(norm, nn.Module) else []


def make_optimizer(name: str, params: list[nn.Parameter], lr: float = LR) -> torch.optim.Optimizer:
    """The job's optimizer over the trainable parameters: AdamW (foreach left to PyTorch), bitsandbytes AdamW8bit,
    Adafactor, SGD with momentum 0.9."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "adamw8bit":
        bnb = import_bitsandbytes()
        opt: torch.optim.Optimizer = bnb.optim.AdamW8bit(params, lr=lr)
        return opt
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")


# --------------------------------------------------------------------------------------------------------
# Bytes of what the step holds
# --------------------------------------------------------------------------------------------------------


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``obj``: a tensor, a bitsandbytes QuantState (absmax, code, offset, nested state2), or a
    dict/list/tuple of those."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)
    elif type(obj).__name__ == "QuantState":
        for v in vars(obj).values():
            yield from _tensors(v)


def _nbytes(tensors: Iterator[torch.Tensor], seen: set[int]) -> int:
    total = 0
    for t in tensors:
        if t.device.type == "meta":
            continue
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes() if t.numel() else 0
    return total


def parameter_bytes(p: nn.Parameter) -> Iterator[torch.Tensor]:
    """The tensors a parameter stores: bitsandbytes' Params4bit is its packed uint8 data and its quant_state."""
    yield p.data
    quant_state = getattr(p, "quant_state", None)
    if quant_state is not None:
        yield from _tensors(quant_state)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters: peft's ``get_nb_trainable_parameters`` where it is a peft model (it counts a
    4-bit parameter's packed bytes as two parameters each), else counted the same way."""
    nb = getattr(model, "get_nb_trainable_parameters", None)
    if callable(nb):
        trainable, total = nb()
        return int(trainable), int(total)
    trainable = total = 0
    for p in model.parameters():
        n = p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


# --------------------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------------------


Batch = dict[str, torch.Tensor]


class FinetuneWorkload(WorkloadInstance):
    """A fine-tunable workload's model with the job's method applied, its optimizer, and the step.

    Built in ``job["weights_dtype"]``; ``set_weight_format`` rebuilds it (same seed: the same random weights) in
    another weights dtype, the previous model dropped first. ``lr``: the optimizer's learning rate."""

    weights_in_precision = True  # the bench precision is the dtype the weights are stored in

    def __init__(self, spec: WorkloadSpec, params: Mapping[str, Any], job: Mapping[str, Any],
                 lr: float = LR) -> None:
        kind = finetune_kind(spec)
        if kind is None:
            raise ValueError(f"{spec.name} cannot be fine-tuned")
        self.spec, self.params, self.kind, self.lr = spec, dict(params), kind, lr
        self.job = dict(job)
        self.seq_len = int(job["seq_len"])
        self.grad_accum = int(job["grad_accum"])
        self.optimizer_kind = str(job["optimizer"])
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.weights_dtype = str(job["weights_dtype"])
        self.vocab_size = 0
        self._encoder: Any = None  # BERT: the workload instance whose batch and loss the step uses
        self.last_loss: torch.Tensor | None = None
        self.breakdown: dict[str, int] = {}
        self.quantized_linear_layers = 0
        self._build(self.weights_dtype)

    # --- building ---

    def _base_model(self, dtype: torch.dtype) -> nn.Module:
        """The workload's model, as the workload builds it, with its weights in ``dtype``, in training mode."""
        if self.kind == DECODER:
            from .llm import build_model

            shape = self.spec.extra["shape"]
            model = build_model(shape, str(self.params.get("attention", "sdpa")), dtype)
            config: Any = model.config
            config.use_cache = False
            self.vocab_size = int(shape.vocab)
            return model
        inst = self.spec.build({**self.params, "seq_len": self.seq_len})
        self._encoder = inst  # its make_batch and loss
        model = inst.modules["model"]
        inst.optimizers.clear()  # the workload's own AdamW: replaced by the job's optimizer
        self.vocab_size = int(getattr(inst, "vocab_size", 0))
        config = model.config
        if getattr(config, "use_cache", None):
            config.use_cache = False  # nothing to cache while training (and checkpointing would say so)
        return model.to(dtype)

    def _build(self, weights_dtype: str) -> None:
        dtype = DTYPES[weights_dtype]
        base = self._base_model(dtype)
        model = apply_method(base, self.kind, self.job, dtype)
        if self.job["method"] == "qlora":
            self.quantized_linear_layers = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit"
                                               and hasattr(m.weight, "quant_state"))
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.modules = {"model": model}
        self.optimizers = {"model": make_optimizer(self.optimizer_kind, trainable, self.lr)}
        self.weights_dtype = weights_dtype
        self.breakdown = {}

    @property
    def model(self) -> nn.Module:
        return self.modules["model"]

    def set_weight_format(self, precision: str, device: torch.device, seed: int = 0) -> dict[str, Any]:
        """Rebuild with the weights in ``precision`` (fp32, bf16, fp16) on ``device`` unless they already are;
        returns ``describe()``."""
        if precision not in DTYPES:
            raise ValueError(f"{precision}: fine-tuning stores its weights in {', '.join(DTYPES)}")
        if precision != self.weights_dtype:
            import gc

            self.modules.clear()
            self.optimizers.clear()
            gc.collect()
            torch.manual_seed(seed)
            with torch.device(device):
                self._build(precision)
        return self.describe()

    # --- the step ---

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Batch:
        """``batch_size`` sequences (the micro-batch) of ``seq_len`` random token ids; BERT: its QA features."""
        if self.kind == ENCODER:
            batch: Batch = self._encoder.make_batch(batch_size, device)
            return batch
        return {"input_ids": torch.randint(0, self.vocab_size, (batch_size, self.seq_len), device=device)}

    def loss(self, batch: Batch) -> torch.Tensor:
        if self.kind == ENCODER:
            out = self.model(**batch)
        else:
            out = self.model(input_ids=batch["input_ids"], labels=batch["input_ids"], use_cache=False)
        loss: torch.Tensor = out.loss
        return loss

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        """``grad_accum`` x (forward + loss + backward), then the optimizer step and zero_grad(set_to_none)."""
        scaler = getattr(ctx, "scaler", None)
        opt = self.optimizers["model"]
        for _ in range(self.grad_accum):
            with ctx.autocast():
                loss = self.loss(batch)
            self.last_loss = loss.detach()
            if self.grad_accum > 1:
                loss = loss / self.grad_accum
            (loss if scaler is None else scaler.scale(loss)).backward()
        first = not self.breakdown
        if first:
            self.breakdown["gradients_bytes"] = _nbytes((p.grad for p in self.model.parameters()
                                                         if p.grad is not None), set())
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
        opt.zero_grad(set_to_none=True)
        if first:
            self.breakdown["optimizer_state_bytes"] = self.optimizer_state_bytes()

    def infer_step(self, batch: Any, ctx: StepContext) -> Any:
        raise NotImplementedError("a fine-tuning workload trains (task finetune)")

    # --- what it holds ---

    def optimizer_state_bytes(self) -> int:
        opt = self.optimizers["model"]
        return _nbytes(_tensors(list(opt.state.values())), set())

    def weight_bytes(self) -> dict[str, int]:
        """Bytes of the frozen (base) and the trainable parameters as stored (a tied weight once; a 4-bit one as
        its packed data and quant_state), and of the buffers."""
        seen: set[int] = set()
        frozen = trainable = 0
        for p in self.model.parameters():
            n = _nbytes(parameter_bytes(p), seen)
            if p.requires_grad:
                trainable += n
            else:
                frozen += n
        buffers = _nbytes(iter(list(self.model.buffers())), seen)
        return {"base_weights_bytes": frozen, "trainable_weights_bytes": trainable, "buffers_bytes": buffers}

    def state_dtypes(self) -> list[str]:
        """The dtypes of the optimizer's state tensors (e.g. uint8 for AdamW8bit's quantized moments)."""
        opt = self.optimizers["model"]
        return sorted({str(t.dtype).removeprefix("torch.") for t in _tensors(list(opt.state.values()))})

    def describe(self) -> dict[str, Any]:
        """What was built, for the result's settings: parameters, bytes by kind (gradients and optimizer state once
        a step ran), the LoRA configuration, library versions."""
        trainable, total = count_parameters(self.model)
        info: dict[str, Any] = {
            "method": self.job["method"], "kind": self.kind, "weights_dtype": self.weights_dtype,
            "trainable_parameters": trainable, "total_parameters": total,
            **self.weight_bytes(), **self.breakdown,
            "optimizer": self.optimizer_kind, "optimizer_class": type(self.optimizers["model"]).__name__,
            "optimizer_state_dtypes": self.state_dtypes(), "lr": self.lr,
            "checkpointing": bool(self.job["checkpointing"]),
            "versions": {"torch": torch.__version__, "transformers": version("transformers"),
                         "peft": version("peft"), "bitsandbytes": version("bitsandbytes")},
        }
        peft_config = getattr(self.model, "peft_config", None)
        if peft_config:
            cfg = next(iter(peft_config.values()))
            targets = cfg.target_modules
            info["lora"] = {"r": cfg.r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
                            "bias": cfg.bias, "task_type": str(getattr(cfg.task_type, "value", cfg.task_type)),
                            "target_modules": sorted(targets) if isinstance(targets, set | list | tuple) else targets,
                            "modules_to_save": sorted(cfg.modules_to_save or []),
                            "adapter_dtype": next((str(p.dtype).removeprefix("torch.")
                                                   for n, p in self.model.named_parameters() if "lora_A" in n), None)}
        if self.job["method"] == "qlora":
            info["qlora"] = {"quant_type": "nf4", "blocksize": NF4_BLOCK,
                             "double_quant": bool(self.job["double_quant"]), "compute_dtype": self.weights_dtype,
                             "quantized_linear_layers": self.quantized_linear_layers,
                             "library": "bitsandbytes.nn.Linear4bit (Params4bit, quant_storage uint8)"}
        return info
