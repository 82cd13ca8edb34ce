"""From a model architecture and a weight format to what a token costs (``perf.LlmWork``), and from the model
names published tables use to the architecture catalog. No torch here."""

from __future__ import annotations

import re

from dlgpu.errors import BadInput

from .architectures import LlmArch, get_arch, load_architectures
from .formats import get_format, get_kv_format, weight_bytes
from .perf import LlmWork

WORKLOAD_ALIASES = {"llama3_8b": "llama-3-8b"}
"""dlgpu's registered language workloads that are catalog LLMs too: ``dlgpu predict llama3_8b --task decode
--precision q4_k_m`` predicts the catalog's Llama 3 8B as a runtime serves it."""


def resolve_model(name: str) -> LlmArch:
    """A catalog id, a Hugging Face repo name, a path to a ``config.json``, or a registered workload alias."""
    return get_arch(WORKLOAD_ALIASES.get(name, name))


def resolve_published_model(name: str) -> LlmArch:
    """The architecture of a model as a published table names it ("Meta-Llama-3-8B", "Llama-3.1-8B",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct"): the catalog row whose Hugging Face repo's name matches, ignoring the
    organisation, case and a trailing "-Instruct"."""
    def key(text: str) -> str:
        text = re.sub(r"\s*\(.*\)$", "", text.strip()).split("/")[-1].lower()
        return re.sub(r"-(instruct|it|hf)$", "", text)

    wanted = key(name)
    for arch in load_architectures().values():
        if key(arch.hf_repo) == wanted or arch.id == wanted:
            return arch
    raise BadInput(f"{name}: no architecture in dlgpu's LLM catalog has this name (`dlgpu workloads llm` lists "
                   "them; a path to a config.json works too)")


def llm_work(arch: LlmArch, weight_format: str, kv_format: str = "fp16") -> LlmWork:
    """What one token of ``arch`` in ``weight_format`` costs: weights resident and read per decode step (the
    active experts, and one row of an untied input embedding: a lookup, not a matmul), FLOPs (2 per active
    multiply-add weight), KV bytes per token of context (``kv_format``), attention FLOPs per token of context
    (QK^T and AV: 4 x layers x heads x head size). Sliding-window layers are counted as full attention here: the
    decode bytes of a long context are then an upper bound."""
    fmt, kv = get_format(weight_format), get_kv_format(kv_format)
    total, active = arch.param_counts()
    embedding = arch.vocab * arch.hidden
    lookup = 0 if arch.tied_embeddings else embedding  # the input table, read one row per token
    resident = float(weight_bytes(arch, fmt))
    per_param = resident / total
    return LlmWork(
        name=f"{arch.id} {fmt.name}", layers=arch.layers, weight_bytes=resident,
        decode_bytes=(active - lookup) * per_param, flops_per_token=2.0 * (active - lookup),
        kv_bytes_per_token=arch.kv_cache_elements(1, 1) * kv.bytes_per_element,
        attention_flops_per_context_token=4.0 * arch.layers * arch.heads * arch.head_dim)
