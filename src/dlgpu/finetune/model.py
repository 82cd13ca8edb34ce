"""The shapes of what is fine-tuned: a decoder-only LLM of the architecture catalog (``llm.architectures``: a catalog
id, a Hugging Face repo name, a ``config.json`` path, or a registered workload alias such as ``llama3_8b``) or a
BERT encoder. No torch here.

Every weight is one ``Weight``: its layer, its role (``linear``: a matrix of a block that bitsandbytes quantizes for
QLoRA and peft can adapt; ``embedding``, ``head``, ``vector`` for the rest), its shape and, for MoE experts, how many
copies. The LoRA module names are peft's (Hugging Face's) names of a Llama-style block's linear layers; a BERT layer's
equivalents are its query/key/value, attention output, intermediate and output dense layers (no gate).

BERT shapes (``ENCODERS``): Devlin et al. 2019 (arXiv:1810.04805) Sec. 3: BERT-base L=12, H=768, A=12, BERT-large
L=24, H=1024, A=16, a feed-forward of 4H; 30,522 WordPiece tokens, 512 learned positions, 2 segment types (the
registered ``bert_base`` and ``bert_large`` workloads build the same); its head for SQuAD is one H->2 dense layer."""

from __future__ import annotations

from dataclasses import dataclass

from dlgpu.errors import BadInput
from dlgpu.llm.architectures import LlmArch

from .config import LINEAR_MODULES

# GGUF tensor names (llm.architectures.Tensor) of the linear layers, by peft module name
_GGUF_TO_PEFT = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj",
                 "ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj",
                 "ffn_gate_exps": "gate_proj", "ffn_up_exps": "up_proj", "ffn_down_exps": "down_proj",
                 "ffn_gate_shexp": "gate_proj", "ffn_up_shexp": "up_proj", "ffn_down_shexp": "down_proj"}


@dataclass(frozen=True)
class Weight:
    """One weight tensor: ``d_in`` x ``d_out`` (a vector has ``d_out`` 1), ``copies`` experts of which ``active``
    serve a token. ``module``: the peft name of a linear layer (``q_proj``), else the tensor's own name."""

    module: str
    layer: int | None
    role: str  # linear | embedding | head | vector
    d_in: int
    d_out: int = 1
    copies: int = 1
    active: int | None = None

    @property
    def elements(self) -> int:
        return self.d_in * self.d_out * self.copies

    @property
    def matrices(self) -> int:
        return self.copies


@dataclass(frozen=True)
class FtModel:
    """What a fine-tuning job trains. ``kind``: ``decoder`` (causal-LM loss over ``vocab`` logits) or ``encoder``
    (BERT, a 2-logit question-answering head). ``gated``: a SwiGLU MLP (gate, up, down) rather than dense-GELU-dense.
    ``ffn``: the FFN width a token passes through (the active experts' together for MoE)."""

    id: str
    name: str
    kind: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    gated: bool
    weights: tuple[Weight, ...]
    head_outputs: int  # logits per token: the vocabulary, or 2 for BERT's QA head
    source: str
    experts: int = 0
    experts_per_token: int = 0

    @property
    def params(self) -> int:
        return sum(w.elements for w in self.weights)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def modules(self) -> tuple[str, ...]:
        """The peft names of the linear layers this model has."""
        return tuple(m for m in LINEAR_MODULES if any(w.module == m for w in self.weights))

    def layer_params(self, layer: int) -> int:
        return sum(w.elements for w in self.weights if w.layer == layer)

    def largest_layer_params(self) -> int:
        """The most parameters one block (or the embedding table) holds: what ZeRO-3 / FSDP gather at once."""
        blocks = [self.layer_params(i) for i in range(self.layers)]
        tables = [w.elements for w in self.weights if w.role in ("embedding", "head")]
        return max(blocks + tables)


ENCODERS: dict[str, tuple[str, int, int, int]] = {
    "bert_base": ("BERT-base (uncased)", 12, 768, 12),
    "bert_large": ("BERT-large (uncased)", 24, 1024, 16),
}
"""name, layers, hidden, heads (Devlin et al. 2019 Sec. 3); FFN 4 x hidden."""
BERT_VOCAB, BERT_POSITIONS, BERT_TYPES = 30_522, 512, 2
BERT_SOURCE = "Devlin et al. 2019, arXiv:1810.04805 Sec. 3 (L, H, A; FFN 4H; 30,522 tokens, 512 positions)"


def _encoder(key: str) -> FtModel:
    name, layers, h, heads = ENCODERS[key]
    f = 4 * h
    ws: list[Weight] = [Weight("word_embeddings", None, "embedding", h, BERT_VOCAB),
                        Weight("position_embeddings", None, "embedding", h, BERT_POSITIONS),
                        Weight("token_type_embeddings", None, "embedding", h, BERT_TYPES),
                        Weight("embeddings.LayerNorm", None, "vector", 2 * h)]
    for i in range(layers):
        ws += [Weight("q_proj", i, "linear", h, h), Weight("k_proj", i, "linear", h, h),
               Weight("v_proj", i, "linear", h, h), Weight("o_proj", i, "linear", h, h),
               Weight("up_proj", i, "linear", h, f), Weight("down_proj", i, "linear", f, h),
               # biases of the six dense layers and two LayerNorms (weight + bias)
               Weight("biases", i, "vector", 4 * h + f + h), Weight("LayerNorm", i, "vector", 4 * h)]
    ws += [Weight("qa_outputs", None, "head", h, 2), Weight("qa_outputs.bias", None, "vector", 2)]
    return FtModel(key, name, "encoder", layers, h, f, heads, heads, h // heads, BERT_VOCAB, BERT_POSITIONS,
                   False, tuple(ws), 2, BERT_SOURCE)


def from_arch(arch: LlmArch) -> FtModel:
    """A decoder's weights from its catalog row or config (``LlmArch.tensors``): every matrix of a block is a linear
    layer (the MoE router too: bitsandbytes quantizes every ``nn.Linear`` but the output head); the token embedding
    and an untied output head are tables; norms, biases and sinks are vectors."""
    if arch.is_mla:
        raise BadInput(f"{arch.id}: multi-head latent attention (DeepSeek MLA): its low-rank projections have no "
                       "q_proj/k_proj/v_proj to adapt; dlgpu sizes fine-tuning for Llama-style attention only")
    if not arch.params_computed:
        raise BadInput(f"{arch.id}: its layer shapes are not computable from the catalog ({arch.not_computed_why()})")
    ws: list[Weight] = []
    for t in arch.tensors():
        if t.vector:
            ws.append(Weight(t.name, t.layer, "vector", t.elements))
        elif t.name == "token_embd":
            ws.append(Weight("embed_tokens", None, "embedding", t.row, t.rows))
        elif t.name == "output":
            ws.append(Weight("lm_head", None, "head", t.row, t.rows))
        elif t.name in ("attn_qkv",):  # fused q/k/v (phi3): split into peft's three modules
            q, kv = arch.heads * arch.head_dim, arch.kv_heads * arch.head_dim
            ws += [Weight("q_proj", t.layer, "linear", t.row, q), Weight("k_proj", t.layer, "linear", t.row, kv),
                   Weight("v_proj", t.layer, "linear", t.row, kv)]
        elif t.name == "ffn_up" and t.rows == 2 * arch.intermediate and arch.architecture in ("phi3",):
            ws += [Weight("gate_proj", t.layer, "linear", t.row, arch.intermediate),
                   Weight("up_proj", t.layer, "linear", t.row, arch.intermediate)]
        else:
            module = _GGUF_TO_PEFT.get(t.name, t.name)
            ws.append(Weight(module, t.layer, "linear", t.row, t.rows, t.copies, t.active))
    return FtModel(arch.id, arch.name, "decoder", arch.layers, arch.hidden, arch.ffn_active_width(), arch.heads,
                   arch.kv_heads, arch.head_dim, arch.vocab, arch.max_context, True, tuple(ws), arch.vocab,
                   arch.source or arch.id, arch.experts, arch.experts_per_token)


def resolve_finetune_model(name: str) -> FtModel:
    """A BERT encoder by workload name, or a decoder by anything ``llm.workload.resolve_model`` takes."""
    from dlgpu.llm.workload import resolve_model

    key = name.strip().lower()
    if key in ENCODERS:
        return _encoder(key)
    try:
        arch = resolve_model(name)
    except BadInput as exc:
        raise BadInput(f"{name!r}: not a model dlgpu can size for fine-tuning: {exc.message} (or bert_base, "
                       "bert_large)") from None
    return from_arch(arch)
