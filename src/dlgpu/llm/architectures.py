"""Decoder-only LLM architectures: the catalog (``data/architectures.csv``, a verbatim copy of the project's
``llm_architectures.csv``: one published ``config.json`` per row, with ``source_url`` and ``notes``) and Hugging
Face ``config.json`` files, with the parameter counts and KV-cache sizes computed from them.

Sources of the rules (LLM.md is the project's sourced notes, ``/work/shared/notes/LLM.md``):

- KV cache (LLM.md §3): per token and layer 2 (K and V) x kv_heads x head_dim elements; a sliding-window layer
  holds min(context, window) tokens; MLA (DeepSeek V2/V3) caches kv_lora_rank + qk_rope_head_dim values per token
  and layer and no separate V (DeepSeek-V3 inference/model.py "absorb" path; llama.cpp ``has_v = !is_mla``; vLLM
  ``MLAAttentionSpec``). Linear-attention (Gated DeltaNet) layers of hybrid models keep a fixed per-sequence state
  instead (LLM.md §3 "Hybrid / recurrent layers"): they add nothing per token here, and that state is not counted
  (its shape is only in the rows' notes). Chunked attention (Llama 4: attention within chunks of
  ``attention_chunk_size`` tokens) is counted as a window of the chunk size: a layer never attends to more.
- MoE (LLM.md §4): memory counts every expert; a token uses the router, the top-k routed experts, the shared
  experts and the first_k_dense dense layers in full.
- Layer patterns: the ``sliding_window_pattern_or_layer_types`` column, its counts checked on load. Gemma 3
  (``sliding_window_pattern`` 6, "5:1", transformers configuration_gemma3.py via LLM.md §3) and Gemma 4 put the
  full/global layer at (i + 1) % 6 == 0; Qwen3.5's ``full_attention_interval`` 4 and Llama 4's
  ``no_rope_layer_interval`` 4 likewise at (i + 1) % 4 == 0 (the rows' counts, 29 + 5 of 34 layers and so on, agree
  only with that placement); gpt-oss alternates starting with a sliding layer (its row).

Parameter counts are computed per tensor (``tensors``), the llama-style decoder plus the features each family's
row notes name: QKV biases (qwen2), QK-norm (qwen3, gemma3), attention biases and per-head sinks (gpt-oss), fused
qkv/gate_up (phi3, same count). Four norms per layer (gemma3), expert and router biases (gpt-oss) and the router's
score-correction bias (DeepSeek-V3 ``noaux_tc``) are not in the notes: they are the additions with which the counts
equal the notes' computed figures to the parameter (tests/test_llm_arch.py). Hybrid rows (Gated DeltaNet) and
Gemma 4 (global layers of other shapes, a dense MLP beside the experts) are not computed: their counts are the
published ones."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from dlgpu.errors import BadInput

CATALOG_FILE = "architectures.csv"
LAYER_KINDS = ("full", "sliding", "chunked", "linear")  # linear: recurrent state, no KV cache

# family features (see the module docstring for where each comes from)
_QKV_BIAS = {"qwen2", "qwen2_moe"}
_QK_NORM = {"qwen3", "qwen3_moe", "gemma3", "gemma3_text"}
_SANDWICH_NORM = {"gemma2", "gemma3", "gemma3_text"}  # pre/post attention and pre/post FFN norms
_GPT_OSS = {"gpt_oss"}  # attention biases and sinks, expert biases, router bias
_ROUTER_BIAS = {"gpt_oss", "deepseek_v3"}
_FUSED = {"phi3"}  # attn_qkv and a fused gate/up in the checkpoint and in GGUF
_NOT_COMPUTED = {"gemma4": "Gemma 4's global layers have their own KV heads and head size and each layer has a dense "
                           "MLP beside the experts; its row gives those only in the notes"}


@dataclass(frozen=True)
class Tensor:
    """One weight tensor as GGUF names it (``blk.N.`` and ``.weight`` left out: ``attn_v``, ``ffn_down_exps``).
    ``row`` is the row length (the input size, ggml's ne[0]), ``rows`` the output size; ``copies`` the experts of a
    3-D ``*_exps`` tensor, of which ``active`` serve a token. ``vector``: a 1-D tensor (norms, biases, sinks)."""

    name: str
    layer: int | None
    row: int
    rows: int = 1
    copies: int = 1
    active: int | None = None
    vector: bool = False

    @property
    def elements(self) -> int:
        return self.row * self.rows * self.copies

    @property
    def active_elements(self) -> int:
        return self.row * self.rows * (self.copies if self.active is None else self.active)


@dataclass(frozen=True)
class LlmArch:
    """One model architecture. ``layer_kinds`` has one entry per layer (``LAYER_KINDS``); ``sliding_window`` and
    ``chunk_size`` are the spans of the sliding and chunked layers. MLA models have ``kv_lora_rank`` > 0; MoE models
    ``experts`` > 0. ``global_kv_heads``/``global_head_dim`` are the full layers' own shape where it differs (Gemma
    4). ``*_params_published`` are the catalog's figures (``total_params_b`` x 1e9), None for a config file."""

    id: str
    name: str
    family: str
    hf_repo: str
    architecture: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int
    layer_kinds: tuple[str, ...]
    sliding_window: int | None = None
    chunk_size: int | None = None
    moe_intermediate: int = 0
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    shared_intermediate: int = 0  # the shared experts' total width; 0 = shared_experts x moe_intermediate
    first_k_dense: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    global_kv_heads: int | None = None
    global_head_dim: int | None = None
    tied_embeddings: bool = False
    dtype: str | None = None
    release: str | None = None
    total_params_published: int | None = None
    active_params_published: int | None = None
    source: str = ""
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def gqa(self) -> float:
        """Query heads per KV head (llama.cpp's n_gqa)."""
        return self.heads / self.kv_heads

    @property
    def params_computed(self) -> bool:
        """Whether ``param_counts`` is computed from the config (True) or the published figures."""
        return self.not_computed_why() is None

    def not_computed_why(self) -> str | None:
        if "linear" in self.layer_kinds:
            return "its linear-attention (Gated DeltaNet) layers' shapes are only in the catalog notes"
        return _NOT_COMPUTED.get(self.architecture)

    def layer_window(self, layer: int) -> int | None:
        """The most tokens layer ``layer`` attends to: None for the whole context, 0 for a linear (recurrent)
        layer, the window or chunk size otherwise."""
        kind = self.layer_kinds[layer]
        if kind == "linear":
            return 0
        if kind == "sliding":
            return self.sliding_window
        if kind == "chunked":
            return self.chunk_size
        return None

    def kv_elements_per_token(self, layer: int) -> int:
        """KV-cache values one token adds to layer ``layer`` (LLM.md §3): MLA kv_lora_rank + qk_rope_head_dim (no
        separate V); else 2 x KV heads x head size (the full layers' own shape where the row gives one: K and V are
        both counted even where Gemma 4 reuses K as V, assumed, as a runtime may store both)."""
        if self.layer_kinds[layer] == "linear":
            return 0
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        if self.layer_kinds[layer] == "full" and self.global_kv_heads:
            return 2 * self.global_kv_heads * (self.global_head_dim or self.head_dim)
        return 2 * self.kv_heads * self.head_dim

    def kv_cache_elements(self, context: int, sequences: int = 1) -> int:
        """KV-cache values for ``sequences`` sequences of ``context`` tokens: Σ over layers of min(context, that
        layer's window) x its values per token (LLM.md §3). llama.cpp sizes a sliding layer a little larger
        (min(kv_size, n_swa x n_seq + n_ubatch) padded to 256 cells, src/llama-kv-cache-iswa.cpp via LLM.md §3)."""
        per_sequence = 0
        for layer in range(self.layers):
            window = self.layer_window(layer)
            tokens = context if window is None else min(context, window)
            per_sequence += tokens * self.kv_elements_per_token(layer)
        return per_sequence * sequences

    def tensors(self) -> tuple[Tensor, ...]:
        """Every weight tensor, GGUF names (``Tensor``). Raises ``BadInput`` where ``not_computed_why``."""
        why = self.not_computed_why()
        if why:
            raise BadInput(f"{self.id}: parameters not computable from the config ({why})")
        h, arch = self.hidden, self.architecture
        out: list[Tensor] = [Tensor("token_embd", None, h, self.vocab), Tensor("output_norm", None, h, vector=True)]
        if not self.tied_embeddings:
            out.append(Tensor("output", None, h, self.vocab))
        for i in range(self.layers):
            norms = ("attn_norm", "ffn_norm", "post_attention_norm", "post_ffw_norm")
            out += [Tensor(n, i, h, vector=True) for n in norms[:4 if arch in _SANDWICH_NORM else 2]]
            out += self._attention(i)
            out += self._ffn(i)
        return tuple(out)

    def _attention(self, i: int) -> list[Tensor]:
        h, heads, arch = self.hidden, self.heads, self.architecture
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            lq = self.q_lora_rank  # 0: no low-rank query (DeepSeek-V2-Lite)
            query = [Tensor("attn_q_a", i, h, lq), Tensor("attn_q_a_norm", i, lq, vector=True),
                     Tensor("attn_q_b", i, lq, heads * qk)] if lq else [Tensor("attn_q", i, h, heads * qk)]
            return [*query, Tensor("attn_kv_a_mqa", i, h, self.kv_lora_rank + self.qk_rope_head_dim),
                    Tensor("attn_kv_a_norm", i, self.kv_lora_rank, vector=True),
                    Tensor("attn_kv_b", i, self.kv_lora_rank, heads * (self.qk_nope_head_dim + self.v_head_dim)),
                    Tensor("attn_output", i, heads * self.v_head_dim, h)]
        q, kv = heads * self.head_dim, self.kv_heads * self.head_dim
        if arch in _FUSED:
            out = [Tensor("attn_qkv", i, h, q + 2 * kv)]
        else:
            out = [Tensor("attn_q", i, h, q), Tensor("attn_k", i, h, kv), Tensor("attn_v", i, h, kv)]
        out.append(Tensor("attn_output", i, q, h))
        if arch in _QKV_BIAS or arch in _GPT_OSS:
            out += [Tensor("attn_q.bias", i, q, vector=True), Tensor("attn_k.bias", i, kv, vector=True),
                    Tensor("attn_v.bias", i, kv, vector=True)]
        if arch in _GPT_OSS:
            out += [Tensor("attn_output.bias", i, h, vector=True), Tensor("attn_sinks", i, heads, vector=True)]
        if arch in _QK_NORM:
            out += [Tensor("attn_q_norm", i, self.head_dim, vector=True),
                    Tensor("attn_k_norm", i, self.head_dim, vector=True)]
        return out

    def _ffn(self, i: int) -> list[Tensor]:
        h, arch = self.hidden, self.architecture
        if not self.is_moe or i < self.first_k_dense:
            f = self.intermediate
            gate_up = [Tensor("ffn_up", i, h, 2 * f)] if arch in _FUSED else [
                Tensor("ffn_gate", i, h, f), Tensor("ffn_up", i, h, f)]
            return [*gate_up, Tensor("ffn_down", i, f, h)]
        e, k, m = self.experts, self.experts_per_token, self.moe_intermediate
        out = [Tensor("ffn_gate_inp", i, h, e), Tensor("ffn_gate_exps", i, h, m, e, k),
               Tensor("ffn_up_exps", i, h, m, e, k), Tensor("ffn_down_exps", i, m, h, e, k)]
        if arch in _ROUTER_BIAS:
            out.append(Tensor("ffn_gate_inp.bias", i, e, vector=True))
        if arch in _GPT_OSS:
            out += [Tensor("ffn_gate_exps.bias", i, m, 1, e, k, vector=True),
                    Tensor("ffn_up_exps.bias", i, m, 1, e, k, vector=True),
                    Tensor("ffn_down_exps.bias", i, h, 1, e, k, vector=True)]
        s = self.shared_intermediate or self.shared_experts * m
        if s:
            out += [Tensor("ffn_gate_shexp", i, h, s), Tensor("ffn_up_shexp", i, h, s),
                    Tensor("ffn_down_shexp", i, s, h)]
        return out

    def param_counts(self) -> tuple[int, int]:
        """(total, active per token), embeddings and an untied output head included in both. Computed from the
        tensors where ``params_computed``, else the published figures (active = total where none is published)."""
        if not self.params_computed:
            if self.total_params_published is None:
                raise BadInput(f"{self.id}: parameters not computable from the config ({self.not_computed_why()})")
            return self.total_params_published, self.active_params_published or self.total_params_published
        ts = self.tensors()
        return sum(t.elements for t in ts), sum(t.active_elements for t in ts)

    def ffn_active_width(self) -> int:
        """The widest FFN one token passes through: a dense layer's intermediate size, or the top-k routed plus
        shared experts' (all of them side by side, with the dense MLP where Gemma 4 has one beside them)."""
        widths = [self.intermediate] if not self.is_moe or self.first_k_dense else []
        if self.is_moe:
            moe = self.experts_per_token * self.moe_intermediate + (
                self.shared_intermediate or self.shared_experts * self.moe_intermediate)
            widths.append(moe + (self.intermediate if self.architecture == "gemma4" else 0))
        return max(widths)


# --- the catalog -------------------------------------------------------------------------------------------------

def parse_layer_kinds(text: str, layers: int, where: str = "") -> tuple[str, ...]:
    """The per-layer kinds from the catalog's ``sliding_window_pattern_or_layer_types`` text ("all layers full
    attention", "all layers sliding-window (4096)", "alternating sliding(128)/full, starting sliding; 12+12",
    "5 local : 1 global (sliding_window_pattern 6); 29 local + 5 global"). The counts after ";" must agree."""
    t = text.strip().lower()
    if t.startswith("all layers full attention"):
        return ("full",) * layers
    if t.startswith("all layers sliding-window"):
        return ("sliding",) * layers

    def kind(words: str) -> str:
        for key, value in (("deltanet", "linear"), ("linear", "linear"), ("chunked", "chunked"),
                           ("local", "sliding"), ("sliding", "sliding"), ("global", "full"), ("full", "full")):
            if key in words:
                return value
        raise ValueError(f"{where}: layer kind {words!r} not understood")

    if t.startswith("alternating"):
        m = re.match(r"alternating (\w+)\S*/(\w+), starting (\w+)", t)
        if not m:
            raise ValueError(f"{where}: {text!r} not understood")
        first = kind(m[3])
        other = kind(m[2]) if first == kind(m[1]) else kind(m[1])
        kinds = tuple(first if i % 2 == 0 else other for i in range(layers))
        named = (kind(m[1]), kind(m[2]))
    else:
        m = re.match(r"(\d+) (.+?) : 1 (\w+)", t)
        if not m:
            raise ValueError(f"{where}: {text!r} not understood")
        period, many, one = int(m[1]) + 1, kind(m[2]), kind(m[3])
        kinds = tuple(one if (i + 1) % period == 0 else many for i in range(layers))
        named = (many, one)
    counts = re.search(r";\s*(\d+)\D+?(\d+)\D*$", t)
    if counts and (kinds.count(named[0]), kinds.count(named[1])) != (int(counts[1]), int(counts[2])):
        raise ValueError(f"{where}: the pattern gives {kinds.count(named[0])} + {kinds.count(named[1])} layers, "
                         f"the text says {counts[1]} + {counts[2]}")
    return kinds


def _int(value: str) -> int:
    return int(value) if value.strip() else 0


def _opt(value: str) -> int | None:
    return int(value) if value.strip() else None


def _billions(value: str) -> int | None:
    return int(Decimal(value) * 10**9) if value.strip() else None


def _from_row(row: dict[str, str], where: str) -> LlmArch:
    layers, hidden, heads = int(row["num_hidden_layers"]), int(row["hidden_size"]), int(row["num_attention_heads"])
    pattern = row["sliding_window_pattern_or_layer_types"]
    chunk = re.search(r"attention_chunk_size (\d+)", pattern)
    notes = row["notes"]
    global_kv = re.search(r"num_global_key_value_heads (\d+)", notes)  # Gemma 4 rows: only in the notes
    global_dim = re.search(r"global_head_dim (\d+)", notes)
    nope, rope = _int(row["qk_nope_head_dim"]), _int(row["qk_rope_head_dim"])
    # head_dim: the column, else nope + rope for MLA (DeepSeek-V3 row notes: "q/k head dim = nope+rope = 192"),
    # else hidden / heads (the config default)
    head_dim = _opt(row["head_dim"]) or (nope + rope if _int(row["kv_lora_rank"]) else hidden // heads)
    return LlmArch(
        id=row["id"], name=row["name"], family=row["family"], hf_repo=row["hf_repo"],
        architecture=row["architecture"], layers=layers, hidden=hidden, intermediate=_int(row["intermediate_size"]),
        heads=heads, kv_heads=_opt(row["num_key_value_heads"]) or heads, head_dim=head_dim,
        vocab=int(row["vocab_size"]), max_context=int(row["max_position_embeddings"]),
        layer_kinds=parse_layer_kinds(pattern, layers, where), sliding_window=_opt(row["sliding_window"]),
        chunk_size=int(chunk[1]) if chunk else None, moe_intermediate=_int(row["moe_intermediate_size"]),
        experts=_int(row["num_experts"]), experts_per_token=_int(row["num_experts_per_tok"]),
        shared_experts=_int(row["num_shared_experts"]), first_k_dense=_int(row["first_k_dense_replace"]),
        kv_lora_rank=_int(row["kv_lora_rank"]), q_lora_rank=_int(row["q_lora_rank"]), qk_rope_head_dim=rope,
        qk_nope_head_dim=nope, v_head_dim=_int(row["v_head_dim"]),
        global_kv_heads=int(global_kv[1]) if global_kv else None,
        global_head_dim=int(global_dim[1]) if global_dim else None,
        tied_embeddings=row["tie_word_embeddings"].strip().lower() == "true", dtype=row["torch_dtype"] or None,
        release=row["release"] or None, total_params_published=_billions(row["total_params_b"]),
        active_params_published=_billions(row["active_params_b"]), source=row["source_url"], notes=notes)


@functools.cache
def load_architectures() -> dict[str, LlmArch]:
    """The catalog, by id, parsed once per process."""
    text = (resources.files("dlgpu.llm") / "data" / CATALOG_FILE).read_text(encoding="utf-8")
    out: dict[str, LlmArch] = {}
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        where = f"{CATALOG_FILE} row {number}"
        try:
            arch = _from_row(row, where)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if arch.id in out:
            raise ValueError(f"{where}: duplicate id {arch.id!r}")
        out[arch.id] = arch
    return out


def get_arch(name: str) -> LlmArch:
    """A catalog id ("llama-3.1-8b"), a Hugging Face repo name ("meta-llama/Llama-3.1-8B", or the part after the
    "/" where one row has it), case-insensitive, or the path of a ``config.json`` (or of the folder holding one)."""
    catalog = load_architectures()
    wanted = name.strip().lower()
    for arch in catalog.values():
        if wanted in (arch.id.lower(), arch.hf_repo.lower()):
            return arch
    by_base = [a for a in catalog.values() if a.hf_repo.lower().split("/")[-1] == wanted]
    if len(by_base) == 1:
        return by_base[0]
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"{path}: not a readable config.json ({exc})") from None
        if not isinstance(config, dict):
            raise BadInput(f"{path}: not a Hugging Face config.json (expected a JSON object)")
        return arch_from_hf_config(config, str(path))
    some = ", ".join(sorted(catalog)[:6])
    raise BadInput(f"{name!r}: not in dlgpu's LLM catalog and no config.json there; give a catalog id ({some}, "
                   f"...; {len(catalog)} in all), a Hugging Face repo name (meta-llama/Llama-3.1-8B) or the path of a "
                   "config.json", param="model")


# --- Hugging Face config.json ------------------------------------------------------------------------------------

_HF_KINDS = {"full_attention": "full", "sliding_attention": "sliding", "chunked_attention": "chunked",
             "linear_attention": "linear"}
# Gemma 3 text configs leave these at the Gemma3TextConfig defaults (transformers configuration_gemma3.py, per the
# catalog's Gemma 3 rows: vocab 262208, max_position_embeddings 131072, sliding_window_pattern 6, tied embeddings);
# sliding_window defaults to 4096 in the class (LLM.md §3), though checkpoints set it.
_GEMMA3_DEFAULTS = {"vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window_pattern": 6,
                    "tie_word_embeddings": True, "sliding_window": 4096}


def _hf_layer_kinds(c: dict[str, Any], model_type: str, layers: int, window: int | None) -> tuple[str, ...]:
    """``layer_types`` where the config has it; else the family's rule (module docstring): Gemma 3's
    ``sliding_window_pattern``, Qwen3.5's ``full_attention_interval``, Llama 4's ``no_rope_layer_interval``
    (default 4, the catalog row) with chunked layers, Gemma 2 alternating (sliding first: assumed, as gpt-oss);
    else every layer sliding where a window is set, full otherwise."""
    if isinstance(c.get("layer_types"), list) and len(c["layer_types"]) == layers:
        try:
            return tuple(_HF_KINDS[t] for t in c["layer_types"])
        except KeyError as exc:
            raise BadInput(f"layer_types: unknown layer type {exc} (known: {', '.join(_HF_KINDS)})") from None

    def every(period: int, one: str, many: str) -> tuple[str, ...]:
        return tuple(one if (i + 1) % period == 0 else many for i in range(layers))

    if model_type.startswith("gemma3") and window:
        return every(int(c.get("sliding_window_pattern", 6)), "full", "sliding")
    if c.get("full_attention_interval"):
        return every(int(c["full_attention_interval"]), "full", "linear")
    if model_type.startswith("llama4") and c.get("attention_chunk_size"):
        return every(int(c.get("no_rope_layer_interval", 4)), "full", "chunked")
    if model_type == "gemma2" and window:
        return tuple("sliding" if i % 2 == 0 else "full" for i in range(layers))
    return ("sliding" if window else "full",) * layers


def arch_from_hf_config(config: dict[str, Any], name: str) -> LlmArch:
    """An ``LlmArch`` from a Hugging Face ``config.json`` (llama, mistral, qwen2/3, gemma2/3 with or without
    ``text_config``, mixtral, qwen3_moe, deepseek_v3, gpt_oss, llama4 keys). ``name`` becomes its id."""
    c: dict[str, Any] = dict(config)
    if isinstance(c.get("text_config"), dict):  # multimodal: the language model's keys, the outer ones as fallback
        c = {**{k: v for k, v in c.items() if k != "text_config"}, **c["text_config"]}
    model_type = str(c.get("model_type") or config.get("model_type") or "llama")
    if model_type.startswith("gemma3"):
        c = {**_GEMMA3_DEFAULTS, **{k: v for k, v in c.items() if v is not None}}

    def need(*keys: str) -> int:
        for key in keys:
            if isinstance(c.get(key), int) and not isinstance(c.get(key), bool):
                return int(c[key])
        raise BadInput(f"{name}: config.json has no integer {' / '.join(keys)} (needed to size the model)")

    def opt(*keys: str) -> int:
        for key in keys:
            if isinstance(c.get(key), int) and not isinstance(c.get(key), bool):
                return int(c[key])
        return 0

    layers, hidden, heads = need("num_hidden_layers"), need("hidden_size"), need("num_attention_heads")
    max_context = need("max_position_embeddings")
    window = opt("sliding_window") or None
    if c.get("use_sliding_window") is False or (window and window >= max_context):
        window = None  # Qwen2/3 (use_sliding_window false) and Phi-4 (window = context): no effect (catalog notes)
    experts = opt("num_local_experts", "num_experts", "n_routed_experts")
    kv_lora = opt("kv_lora_rank")
    nope, rope = opt("qk_nope_head_dim"), opt("qk_rope_head_dim")
    head_dim = opt("head_dim") or (nope + rope if kv_lora else hidden // heads)
    intermediate = opt("intermediate_size")
    # the expert width: moe_intermediate_size, else intermediate_size (Mixtral, gpt-oss, Llama 4: catalog notes)
    moe_intermediate = opt("moe_intermediate_size") or (intermediate if experts else 0)
    shared_width = opt("shared_expert_intermediate_size")
    shared = opt("n_shared_experts", "num_shared_experts") or (1 if shared_width else 0)
    if model_type.startswith("llama4") and experts:
        shared = 1  # transformers Llama4TextMoe always builds one shared expert (catalog row notes)
    kinds = _hf_layer_kinds(c, model_type, layers, window)
    chunk = opt("attention_chunk_size") or None
    tied = c.get("tie_word_embeddings", config.get("tie_word_embeddings", False))
    dtype = c.get("torch_dtype") or c.get("dtype")
    return LlmArch(
        id=name, name=name, family=model_type, hf_repo=str(c.get("_name_or_path") or ""), architecture=model_type,
        layers=layers, hidden=hidden, intermediate=intermediate, heads=heads,
        kv_heads=opt("num_key_value_heads") or heads, head_dim=head_dim, vocab=need("vocab_size"),
        max_context=max_context, layer_kinds=kinds, sliding_window=window if "sliding" in kinds else None,
        chunk_size=chunk if "chunked" in kinds else None, moe_intermediate=moe_intermediate, experts=experts,
        experts_per_token=opt("num_experts_per_tok", "experts_per_token", "top_k_experts"), shared_experts=shared,
        shared_intermediate=shared_width, first_k_dense=opt("first_k_dense_replace"), kv_lora_rank=kv_lora,
        q_lora_rank=opt("q_lora_rank"), qk_rope_head_dim=rope, qk_nope_head_dim=nope, v_head_dim=opt("v_head_dim"),
        global_kv_heads=opt("num_global_key_value_heads") or None, global_head_dim=opt("global_head_dim") or None,
        tied_embeddings=bool(tied), dtype=str(dtype) if dtype else None, source=name)

