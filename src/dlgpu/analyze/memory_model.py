"""Memory a workload needs at the least, counted on the meta device (no memory, no compute).

Training keeps weights, gradients and optimizer state resident: 4 + 4 + 4k bytes per fp32 parameter,
with k = 1 for SGD with momentum and 2 for Adam/AdamW (the accounting of accelerate's estimate-memory
and DeepSpeed's ZeRO paper, arXiv:1910.02054 section 3.1; autocast keeps fp32 master weights). Activations
come on top and are not counted here: this is a floor, used to skip runs that cannot fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dlgpu.workloads.registry import WorkloadSpec

OPTIMIZER_STATES_PER_PARAM = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}


@dataclass(frozen=True)
class MemoryFloor:
    parameters: int
    weights_bytes: int
    buffers_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    optimizer: str

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.buffers_bytes + self.gradients_bytes + self.optimizer_bytes


def memory_floor(spec: WorkloadSpec, params: Mapping[str, Any], task: str) -> MemoryFloor:
    with torch.device("meta"):
        inst = spec.build(params)
    modules = list(inst.modules.values())
    ps = [p for m in modules for p in m.parameters()]
    n = sum(p.numel() for p in ps)
    weights = sum(p.numel() * p.element_size() for p in ps)
    buffers = sum(b.numel() * b.element_size() for m in modules for b in m.buffers())
    trainable = sum(p.numel() * p.element_size() for p in ps if p.requires_grad)
    k = OPTIMIZER_STATES_PER_PARAM.get(inst.optimizer_kind, 2)
    training = task == "train"
    return MemoryFloor(
        parameters=n,
        weights_bytes=weights,
        buffers_bytes=buffers,
        gradients_bytes=trainable if training else 0,
        optimizer_bytes=k * trainable if training else 0,
        optimizer=inst.optimizer_kind,
    )


def activation_bytes(spec: WorkloadSpec, params: Mapping[str, Any], batch_size: int, precision: str) -> int:
    """Bytes of the tensors a training step's forward keeps for backward (parameters excluded).

    Traced on fake tensors with ``saved_tensors_hooks``: the exact set autograd saves for this model, batch
    and precision, with nothing allocated. Views of one buffer saved separately are counted separately, so
    this leans high. Raises where the model cannot be traced on fake tensors (data-dependent shapes, as in
    detection models' box sampling)."""
    from .trace import profile

    acts = profile(spec, params, "train", precision, batch_size).activation_bytes
    assert acts is not None
    return acts


KV_ELEMENT_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2}


def kv_cache_bytes(spec: WorkloadSpec, params: Mapping[str, Any], batch_size: int, precision: str) -> int:
    """Bytes of the KV cache a decode step attends to: 2 (keys and values) x layers x context_len x (KV heads
    x head dim) x bytes per element x batch, at the precision's element size (counted on the meta device).

    The traced profile's ``cache_bytes`` is the exact figure: under autocast a model may keep a wider cache
    than its matmuls' dtype (Llama's keys come out of RoPE in fp32, and Hugging Face's cache then keeps
    values in fp32 too), so this is the floor used to skip runs that cannot fit."""
    with torch.device("meta"):
        inst = spec.build(params)
    size = getattr(inst, "kv_cache_bytes", None)
    if size is None:
        raise ValueError(f"{spec.name} has no KV cache (it does not decode)")
    return int(size(batch_size, KV_ELEMENT_BYTES[precision]))
