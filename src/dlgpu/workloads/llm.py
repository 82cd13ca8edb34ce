"""LLM inference workloads (family ``llm``): the small dense decoder-only models of dlgpu's LLM architecture catalog
(``dlgpu.llm.architectures``, ``llm/data/architectures.csv``), named by catalog id, measured here for decode and
prefill with their weights stored in the format asked for.

Each is a Hugging Face ``transformers`` model of its architecture (``LlamaForCausalLM``, ``Qwen2ForCausalLM``,
``Qwen3ForCausalLM``, ``MistralForCausalLM``) built from a config written from the catalog row, with random weights:
nothing is downloaded. The shapes are repeated below because ``workloads`` (layer 1) may not import ``llm`` (layer
2); ``tests/test_llm_bench.py`` checks every row against ``get_arch(id)``. Fields the catalog has no column for
(RoPE base and scaling, norm epsilon) stay at the transformers defaults: they change no cost.

Tasks (samples are tokens, so samples/s = tokens/s; except ``finetune``, ``dlgpu bench --task finetune``, one
optimizer step of fine-tuning, whose samples are sequences: ``workloads.finetune``, ``measure.finetune``):

- ``decode``: one new token per sequence against a KV cache already holding ``context_len`` tokens
  (``--set context_len=N``), as the language workloads' decode; the batch counts sequences (= tokens per step);
- ``infer``: the prefill of a prompt of ``prompt_len`` tokens (``--set prompt_len=N``), one forward pass that fills
  a fresh KV cache and returns the next token's logits; the batch counts tokens, a multiple of ``prompt_len``
  (the default batch is one prompt).

Precision is the weight format (``devices.precision.WEIGHT_FORMAT_FAMILIES``): fp32, bf16 or fp16 weights and KV
cache, with no autocast; ``int8`` (torchao int8 weight-only, per row) and ``int4`` (torchao int4 weight-only,
groups of 128) on the linear layers, computing in bf16 with a bf16 KV cache. The model is built in bf16 (how these
checkpoints are published) and rebuilt in the format of each precision measured (``measure.harness``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.results.vocab import FINETUNE_TASK

from .registry import Param, TaskFacts, WorkloadSpec, register_workload

if TYPE_CHECKING:
    from .models.llm import LlmWorkload

FAMILY = "llm"
LLM_TASKS = ("infer", "decode")
ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral")
"""The catalog's ``architecture`` values built here (dense decoder-only models with a transformers class)."""


@dataclass(frozen=True)
class LlmShape:
    """The fields of a catalog row (``dlgpu.llm.architectures.LlmArch``) that build its model."""

    id: str
    name: str
    hf_repo: str
    architecture: str  # one of ARCHITECTURES
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    tied: bool
    sliding_window: int | None = None


# The dense llama/qwen2/qwen3/mistral rows of the catalog up to 8B parameters (bf16 weights of at most ~16 GB).
# MoE, MLA, hybrid (linear attention) and Gemma/Phi rows are not built here.
CATALOG_SHAPES: tuple[LlmShape, ...] = (
    LlmShape("llama-3.2-1b", "Llama 3.2 1B", "meta-llama/Llama-3.2-1B", "llama", layers=16, hidden=2048,
             intermediate=8192, heads=32, kv_heads=8, head_dim=64, vocab=128256, max_context=131072, tied=True),
    LlmShape("llama-3.2-3b", "Llama 3.2 3B", "meta-llama/Llama-3.2-3B", "llama", layers=28, hidden=3072,
             intermediate=8192, heads=24, kv_heads=8, head_dim=128, vocab=128256, max_context=131072, tied=True),
    LlmShape("llama-3-8b", "Meta Llama 3 8B", "meta-llama/Meta-Llama-3-8B", "llama", layers=32, hidden=4096,
             intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=128256, max_context=8192, tied=False),
    LlmShape("llama-3.1-8b", "Llama 3.1 8B", "meta-llama/Llama-3.1-8B", "llama", layers=32, hidden=4096,
             intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=128256, max_context=131072, tied=False),
    LlmShape("mistral-7b-v0.1", "Mistral 7B v0.1", "mistralai/Mistral-7B-v0.1", "mistral", layers=32, hidden=4096,
             intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=32000, max_context=32768, tied=False,
             sliding_window=4096),
    LlmShape("mistral-7b-v0.3", "Mistral 7B v0.3", "mistralai/Mistral-7B-v0.3", "mistral", layers=32, hidden=4096,
             intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=32768, max_context=32768, tied=False),
    LlmShape("qwen2.5-7b", "Qwen2.5 7B", "Qwen/Qwen2.5-7B", "qwen2", layers=28, hidden=3584, intermediate=18944,
             heads=28, kv_heads=4, head_dim=128, vocab=152064, max_context=131072, tied=False),
    LlmShape("qwen3-0.6b", "Qwen3 0.6B", "Qwen/Qwen3-0.6B", "qwen3", layers=28, hidden=1024, intermediate=3072,
             heads=16, kv_heads=8, head_dim=128, vocab=151936, max_context=40960, tied=True),
    LlmShape("qwen3-4b", "Qwen3 4B", "Qwen/Qwen3-4B", "qwen3", layers=36, hidden=2560, intermediate=9728,
             heads=32, kv_heads=8, head_dim=128, vocab=151936, max_context=40960, tied=True),
    LlmShape("qwen3-8b", "Qwen3 8B", "Qwen/Qwen3-8B", "qwen3", layers=36, hidden=4096, intermediate=12288,
             heads=32, kv_heads=8, head_dim=128, vocab=151936, max_context=40960, tied=False),
)

TEST_SHAPE = LlmShape("test_llm", "tiny Llama for tests", "-", "llama", layers=2, hidden=64, intermediate=128,
                      heads=4, kv_heads=2, head_dim=16, vocab=256, max_context=64, tied=False)

_CATALOG_SOURCE = ("dlgpu's LLM architecture catalog, row {id} (src/dlgpu/llm/data/architectures.csv, with the "
                   "config.json sources in its source_url); transformers.{cls}")
_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
            "mistral": "MistralForCausalLM"}

INFERENCE_FACTS = TaskFacts(
    dataset="random token ids (LLM inference: prompt prefill and token-by-token decode)",
    source="https://github.com/ggml-org/llama.cpp/tree/master/tools/llama-bench (pp/tg: prefill and decode speeds "
           "in tokens/s, the figures published LLM speeds give)",
    notes="No real task to project: a serving job's time is its tokens over the measured tokens/s.",
)


def _params(context_len: int, prompt_len: int) -> tuple[Param, ...]:
    return (
        Param("context_len", context_len, "tokens already in the KV cache when a decode step runs"),
        Param("prompt_len", prompt_len, "tokens in the prompt one prefill (task infer) processes"),
        Param("attention", "sdpa", "attention implementation: PyTorch SDPA kernels or the plain eager path",
              choices=("sdpa", "eager")),
    )


def check_context(shape: LlmShape, p: Mapping[str, Any]) -> None:
    """BadInput where ``context_len`` (plus the decoded token) or ``prompt_len`` exceed ``shape``'s context."""
    if int(p["context_len"]) + 1 > shape.max_context:
        raise BadInput(f"context_len={p['context_len']}: {shape.id} has a context of {shape.max_context} tokens "
                       f"(the context and the decoded token must fit: at most {shape.max_context - 1})",
                       param="overrides")
    if int(p["prompt_len"]) > shape.max_context:
        raise BadInput(f"prompt_len={p['prompt_len']}: {shape.id} has a context of {shape.max_context} tokens",
                       param="overrides")


def _factory(shape: LlmShape) -> Any:
    def build(p: Mapping[str, Any]) -> LlmWorkload:
        from .models.llm import LlmWorkload

        check_context(shape, p)
        return LlmWorkload(shape, attention=str(p["attention"]), context_len=int(p["context_len"]),
                           prompt_len=int(p["prompt_len"]))

    return build


def _register(shape: LlmShape, *, tiny: bool, context_len: int, prompt_len: int, description: str,
              source: str) -> None:
    register_workload(
        name=shape.id,
        family=FAMILY,
        description=description,
        batch_size=1,
        quick_batch_size=1,
        facts=INFERENCE_FACTS,
        sample_unit="token",
        params=_params(context_len, prompt_len),
        optimizer="none",
        tiny=tiny,
        tasks=(*LLM_TASKS, FINETUNE_TASK),
        architecture_source=source,
        notes=("Random weights, built in bf16 and rebuilt in each measured weight format (fp32, bf16, fp16; int8 and "
               "int4 through torchao weight-only quantization of the linear layers). Task infer is the prefill: its "
               "batch counts tokens, a multiple of prompt_len."),
        extra={"shape": shape, "finetune": "decoder"},
    )(_factory(shape))


for _shape in CATALOG_SHAPES:
    _register(_shape, tiny=False, context_len=1024, prompt_len=512,
              description=f"{_shape.name} inference (decode and prefill) in its weight formats, random weights",
              source=_CATALOG_SOURCE.format(id=_shape.id, cls=_CLASSES[_shape.architecture]))

_register(TEST_SHAPE, tiny=True, context_len=16, prompt_len=16,
          description="tiny Llama (2 layers, hidden 64, 4 query heads sharing 2 KV heads, vocab 256) for LLM tests",
          source="transformers.LlamaForCausalLM, 2 layers, hidden 64, FFN 128, 4 heads, 2 KV heads, 64 positions")


def prefill_batch(spec: WorkloadSpec, params: Mapping[str, Any]) -> int | None:
    """The default batch of an LLM workload's prefill (task infer), in tokens: one prompt. None for other workloads."""
    if spec.family != FAMILY or "prompt_len" not in params:
        return None
    return int(params["prompt_len"])
