"""Which workloads can be fine-tuned (``dlgpu bench --task finetune``) and how their modules are named: the LLM
workloads (family ``llm``, decoder-only: every catalog LLM and ``test_llm``) and the BERT encoders (``bert_base``,
``bert_large``, ``test_bert``: their SQuAD question-answering step). Torch-free; the torch side (building the model,
applying the method, the step) is ``workloads.models.finetune``, and the job's settings are parsed by
``dlgpu.finetune.config`` (layer 2) and handed down as plain values.

LoRA targets are named as peft names a Llama-style decoder's linear layers (``q_proj``, ..., ``down_proj``); on a BERT
encoder each is the layer that does the same job (``ENCODER_TARGETS``; BERT's FFN has no gate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlgpu.results.vocab import FINETUNE_TASK

from .spec import WorkloadSpec

DECODER = "decoder"
ENCODER = "encoder"

ENCODER_TARGETS: dict[str, str | None] = {
    "q_proj": r"attention\.self\.query",
    "k_proj": r"attention\.self\.key",
    "v_proj": r"attention\.self\.value",
    "o_proj": r"attention\.output\.dense",
    "gate_proj": None,  # BERT's FFN is dense -> GELU -> dense: no gate
    "up_proj": r"intermediate\.dense",
    "down_proj": r"output\.dense",  # right after "layer.N.": not the attention's output.dense
}
"""A BERT layer's module (a regular expression on its name, matched right after ``.layer.N.``) for each decoder-style
LoRA target."""


def finetune_kind(spec: WorkloadSpec) -> str | None:
    """``decoder`` (causal-LM loss on random tokens), ``encoder`` (the workload's own training loss), or None where
    ``spec`` cannot be fine-tuned."""
    if not spec.supports(FINETUNE_TASK):
        return None
    kind = spec.extra.get("finetune")
    return str(kind) if kind in (DECODER, ENCODER) else None


def max_seq_len(spec: WorkloadSpec) -> int | None:
    """The longest sequence ``spec``'s model takes (its context or learned positions); None if unbounded."""
    shape = spec.extra.get("shape")
    if shape is not None:
        return int(shape.max_context)
    positions = spec.extra.get("max_positions")
    return None if positions is None else int(positions)


def default_seq_len(spec: WorkloadSpec, params: Mapping[str, Any], job_default: int) -> int:
    """The fine-tuning sequence length when ``--set seq_len`` is not given: the workload's own (BERT's SQuAD
    features), else the job's default bounded by the model's context."""
    if "seq_len" in params:
        return int(params["seq_len"])
    bound = max_seq_len(spec)
    return job_default if bound is None else min(job_default, bound)


def encoder_targets(targets: tuple[str, ...]) -> dict[str, str | None]:
    """The BERT module pattern of each decoder-style target (None: no such layer in BERT)."""
    return {t: ENCODER_TARGETS.get(t) for t in targets}
