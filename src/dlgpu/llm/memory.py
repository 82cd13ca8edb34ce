"""The memory an LLM needs to serve: weights, KV cache, activations and the runtime's own overhead, and the
largest context or number of concurrent sequences that fit a given memory (exact, by bisection).

- Weights: every expert (LLM.md §4: memory counts all experts; sizing from active parameters is the mistake
  llmfit#230 made), in the weight format (``formats.weight_bytes``).
- KV cache: ``LlmArch.kv_cache_elements`` (LLM.md §3) at the KV format's bytes per value, for that context and
  that many sequences.
- Activations, dlgpu's estimate (not a sourced formula): the largest live tensors of one prefill chunk of
  c = min(prefill_chunk, context) tokens, c x (hidden + 2 x FFN width) values at the compute width (2 bytes; 4 for
  fp32 weights) plus c x vocab fp32 logits. The FFN width is the dense intermediate size or the active experts'
  (``LlmArch.ffn_active_width``); 2 x because a SwiGLU's gate and up outputs are live together. It assumes fused
  (flash) attention, which keeps no c x context score matrix; a runtime that materializes the scores needs about
  c x heads x context x 4 bytes more. Logits for every chunk token are an upper side: llama.cpp computes them
  only for the tokens asked for.
- Runtime overhead: what the caller states (CUDA context, allocator slack, compute buffers), 0 by default.

Apple unified memory: ``unified_memory_share`` (LLM.md §6)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from dlgpu.errors import BadInput

from .architectures import LlmArch
from .formats import KvFormat, WeightFormat, get_format, get_kv_format, weight_bytes

GiB = 2**30


@dataclass(frozen=True)
class LlmMemory:
    """Bytes by part; ``basis`` says how each was reached."""

    weights_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    runtime_bytes: int
    total_bytes: int
    basis: str


def _formats(weight_format: WeightFormat | str, kv_format: KvFormat | str) -> tuple[WeightFormat, KvFormat]:
    wf = get_format(weight_format) if isinstance(weight_format, str) else weight_format
    kvf = get_kv_format(kv_format) if isinstance(kv_format, str) else kv_format
    return wf, kvf


def llm_memory(arch: LlmArch, weight_format: WeightFormat | str, kv_format: KvFormat | str, context: int,
               sequences: int = 1, prefill_chunk: int = 512, runtime_bytes: int = 0) -> LlmMemory:
    """The memory to serve ``sequences`` sequences of ``context`` tokens each (module docstring)."""
    if context < 0 or sequences < 0 or prefill_chunk < 1 or runtime_bytes < 0:
        raise BadInput(f"context={context}, sequences={sequences}, prefill_chunk={prefill_chunk}, "
                       f"runtime_bytes={runtime_bytes}: need context, sequences, runtime_bytes >= 0 and "
                       "prefill_chunk >= 1")
    wf, kvf = _formats(weight_format, kv_format)
    weights = weight_bytes(arch, wf)
    kv = math.ceil(arch.kv_cache_elements(context, sequences) * kvf.bytes_per_element)
    chunk = min(prefill_chunk, context) if sequences else 0
    width = 4 if wf.name == "fp32" else 2
    activations = chunk * ((arch.hidden + 2 * arch.ffn_active_width()) * width + arch.vocab * 4)
    computed = "computed per tensor" if arch.params_computed else "published parameter count x bits per weight"
    basis = (f"weights: {wf.name}, every expert, {computed}; KV: {kvf.name} x {context} tokens x {sequences} "
             f"sequences (sliding/chunked layers capped at their span, MLA latent); activations: dlgpu's estimate "
             f"for a {chunk}-token prefill chunk with fused attention and fp32 logits; runtime: as given")
    total = weights + kv + activations + runtime_bytes
    return LlmMemory(weights, kv, activations, runtime_bytes, total, basis)


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] with fits(n), fits monotone non-increasing; low - 1 where none fits."""
    if not fits(low):
        return low - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def largest_context(arch: LlmArch, weight_format: WeightFormat | str, kv_format: KvFormat | str, memory_bytes: int,
                    sequences: int = 1, prefill_chunk: int = 512, runtime_bytes: int = 0) -> int:
    """The longest context (tokens per sequence, at most ``arch.max_context``) whose ``llm_memory`` total fits
    ``memory_bytes`` with ``sequences`` sequences; 0 where not even one token fits (weights too big)."""
    def fits(context: int) -> bool:
        m = llm_memory(arch, weight_format, kv_format, context, sequences, prefill_chunk, runtime_bytes)
        return m.total_bytes <= memory_bytes

    return _largest(fits, 1, arch.max_context)


def largest_concurrency(arch: LlmArch, weight_format: WeightFormat | str, kv_format: KvFormat | str,
                        memory_bytes: int, context: int, prefill_chunk: int = 512, runtime_bytes: int = 0) -> int:
    """The most sequences of ``context`` tokens whose ``llm_memory`` total fits ``memory_bytes``; 0 where not one
    does. Bounded by memory / KV bytes per sequence (raises ``BadInput`` where a sequence needs no KV cache)."""
    def fits(sequences: int) -> bool:
        m = llm_memory(arch, weight_format, kv_format, context, sequences, prefill_chunk, runtime_bytes)
        return m.total_bytes <= memory_bytes

    per_sequence = arch.kv_cache_elements(context, 1)
    if per_sequence == 0:
        raise BadInput(f"context={context}: a sequence of {arch.id} then holds no KV cache; give a context >= 1")
    _, kvf = _formats(weight_format, kv_format)
    high = max(1, math.ceil(memory_bytes / (per_sequence * kvf.bytes_per_element)))
    return _largest(fits, 1, high)


def unified_memory_share(total_bytes: int) -> tuple[int, str]:
    """What an Apple-silicon GPU may use of ``total_bytes`` of unified memory, where it cannot be asked: 2/3 of RAM
    up to 36 GB (Apple's GB of RAM are GiB), 3/4 above (LLM.md §6: "a common heuristic, not Apple's statement";
    measured: 21845 MB of 32 GB on an M1 Max, ~47 GB of 64 GB, 107.52 of 128 GiB on macOS 26)."""
    share = total_bytes * 2 // 3 if total_bytes <= 36 * GiB else total_bytes * 3 // 4
    rule = "2/3" if total_bytes <= 36 * GiB else "3/4"
    basis = (f"{rule} of {total_bytes / GiB:.0f} GiB unified memory: a common heuristic, not Apple's statement "
             "(LLM.md §6); on the Mac itself torch.mps.recommended_max_memory() (Metal's "
             "recommendedMaxWorkingSetSize) is the real figure, and `sudo sysctl iogpu.wired_limit_mb` raises it")
    return share, basis
