"""Transformer language workloads: BERT fine-tuned on SQuAD, and decoder-only LMs pretrained on a token budget.

Every model is a Hugging Face ``transformers`` class built from a config object written out here, with
random weights: nothing is downloaded (no ``from_pretrained``, no hub config, no tokenizer). Batches are
random token ids of the real shape, which costs the same as text. Attention runs through PyTorch's SDPA
(``attn_implementation="sdpa"``), as a tuned training setup would; ``--set attention=eager`` compares it
with the plain matmul-softmax path.

Decoder-only models also run task ``decode`` (generation): one new token per sequence against a KV cache
already holding ``context_len`` tokens (``--set context_len=N``); see ``CausalLMWorkload.decode_step``.

Batch sizes: where a per-GPU batch is published it is used; otherwise the paper's *global* batch in
sequences is given (said so at each workload): the real per-GPU batch is that divided by the data-parallel
width, and a single GPU may hold less."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.results.vocab import FINETUNE_TASK

from .registry import Param, TaskFacts, register_workload

if TYPE_CHECKING:
    from .models.language import CausalLMWorkload, QuestionAnsweringWorkload


# --------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------


def _seq_len(default: int, what: str = "tokens per sequence") -> Param:
    return Param("seq_len", default, what, minimum=2)


def _vocab(default: int) -> Param:
    return Param("vocab_size", default, "vocabulary size (embedding rows and output logits)", minimum=2)


_ATTENTION = Param(
    "attention", "sdpa", "attention implementation: PyTorch SDPA kernels or the plain eager path",
    choices=("sdpa", "eager"),
)


def _common_kwargs(p: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Config kwargs that go in through ``**kwargs`` rather than as typed fields of a config class.

    ``attn_implementation`` is a generic config kwarg of every model. ``rope_theta`` (Llama) is a typed
    field in transformers 4.x; transformers 5 moved it into ``rope_parameters`` but still accepts and
    converts it, so passing it this way works with both."""
    return {"attn_implementation": p["attention"], **extra}


def _check_positions(p: Mapping[str, Any], max_positions: int, name: str) -> None:
    """Models with learned position embeddings cannot take sequences longer than their table."""
    if int(p["seq_len"]) > max_positions:
        raise BadInput(f"seq_len={p['seq_len']}: {name} has {max_positions} learned positions "
                       f"(seq_len must be at most {max_positions})", param="overrides")
    if "context_len" in p and int(p["context_len"]) + 1 > max_positions:
        raise BadInput(f"context_len={p['context_len']}: {name} has {max_positions} learned positions "
                       f"(the context and the decoded token must fit: context_len at most {max_positions - 1})",
                       param="overrides")


def _context_len(default: int, what: str = "tokens already in the KV cache when a decode step runs") -> Param:
    return Param("context_len", default, what, minimum=1)


_DECODE_TASKS = ("train", "infer", "decode")
_ENCODER_TASKS = ("train", "infer", FINETUNE_TASK)
"""BERT also fine-tunes (``dlgpu bench --task finetune``: its QA training step with a method applied,
``workloads.finetune``)."""


def _encoder_extra(positions: int, layers: int) -> dict[str, Any]:
    return {"finetune": "encoder", "max_positions": positions, "layers": layers}


# --------------------------------------------------------------------------------------------------------
# BERT on SQuAD v1.1
# --------------------------------------------------------------------------------------------------------

# SQuAD v1.1: 87,599 training and 10,570 dev questions (the official train-v1.1.json / dev-v1.1.json, as
# counted on the dataset card https://huggingface.co/datasets/rajpurkar/squad ; Rajpurkar et al. 2016,
# arXiv:1606.05250). BERT fine-tunes for 3 epochs at batch 32, lr 5e-5 (Devlin et al. 2019,
# arXiv:1810.04805, Sec. 4.2); dev F1 88.5 (BERT-base) and 90.9 (BERT-large), single models, Table 2.
_SQUAD_SOURCE = (
    "https://arxiv.org/abs/1606.05250 ; https://huggingface.co/datasets/rajpurkar/squad (split sizes) ; "
    "https://arxiv.org/abs/1810.04805 (Sec. 4.2: 3 epochs, batch 32, lr 5e-5; Table 2: dev F1) ; "
    "https://github.com/google-research/bert#squad-11 (max_seq_length 384, doc_stride 128)"
)
_SQUAD_NOTES = (
    "Samples are questions. BERT's preprocessing splits a question whose context is longer than seq_len "
    "into several overlapping features (doc_stride 128), so a real epoch runs slightly more sequences "
    "than questions."
)


def _squad_facts(f1: str) -> TaskFacts:
    return TaskFacts(
        dataset="SQuAD v1.1",
        source=_SQUAD_SOURCE,
        train_samples=87_599,
        epochs=3,
        target_quality=f1,
        eval_samples=10_570,
        eval_dataset="the SQuAD v1.1 dev set",
        notes=_SQUAD_NOTES,
    )


SQUAD_BERT_BASE = _squad_facts("88.5 F1 on SQuAD v1.1 dev (BERT-base, single model; Devlin et al. Table 2)")
SQUAD_BERT_LARGE = _squad_facts("90.9 F1 on SQuAD v1.1 dev (BERT-large, single model; Devlin et al. Table 2)")

# BERT's uncased WordPiece vocabulary has 30,522 entries (google-research/bert uncased checkpoints'
# vocab.txt; BertConfig's default); 512 learned positions and 2 segment types (Devlin et al. Sec. 3).
_BERT_VOCAB = 30_522
_BERT_POSITIONS = 512
_BERT_LR = 5e-5  # Devlin et al. Sec. 4.2 (SQuAD v1.1 fine-tuning)


def _bert(p: Mapping[str, Any], *, layers: int, hidden: int, heads: int, intermediate: int,
          positions: int = _BERT_POSITIONS) -> QuestionAnsweringWorkload:
    from transformers import BertConfig, BertForQuestionAnswering

    from .models.language import QuestionAnsweringWorkload

    _check_positions(p, positions, "BERT")
    config = BertConfig(
        vocab_size=p["vocab_size"],
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=positions,
        type_vocab_size=2,
        **_common_kwargs(p),
    )
    # BertForQuestionAnswering = BertModel without the pooler + Linear(hidden, 2) for start/end logits.
    model = BertForQuestionAnswering(config)
    return QuestionAnsweringWorkload(model, int(p["seq_len"]), int(p["vocab_size"]), _BERT_LR)


_BERT_PARAMS = (_seq_len(384, "tokens per question+context feature (BERT's SQuAD max_seq_length)"),
                _vocab(_BERT_VOCAB), _ATTENTION)


@register_workload(
    name="bert_base",
    family="language",
    description="BERT-base (110M) fine-tuning on SQuAD v1.1 question answering, 384-token features",
    # The BERT paper's SQuAD fine-tuning batch (Sec. 4.2), a global batch on Cloud TPU.
    batch_size=32,
    quick_batch_size=2,
    facts=SQUAD_BERT_BASE,
    sample_unit="sequence",
    params=_BERT_PARAMS,
    optimizer="adamw",
    tasks=_ENCODER_TASKS,
    extra=_encoder_extra(_BERT_POSITIONS, 12),
    architecture_source="Devlin et al. 2019 (arXiv:1810.04805): L=12, H=768, A=12, FFN 3072; "
    "transformers.BertForQuestionAnswering",
)
def bert_base(p: Mapping[str, Any]) -> QuestionAnsweringWorkload:
    return _bert(p, layers=12, hidden=768, heads=12, intermediate=3072)


@register_workload(
    name="bert_large",
    family="language",
    description="BERT-large (340M) fine-tuning on SQuAD v1.1 question answering, 384-token features",
    batch_size=32,  # the BERT paper's SQuAD batch (Sec. 4.2), global
    quick_batch_size=1,
    facts=SQUAD_BERT_LARGE,
    sample_unit="sequence",
    params=_BERT_PARAMS,
    optimizer="adamw",
    tasks=_ENCODER_TASKS,
    extra=_encoder_extra(_BERT_POSITIONS, 24),
    architecture_source="Devlin et al. 2019 (arXiv:1810.04805): L=24, H=1024, A=16, FFN 4096; "
    "transformers.BertForQuestionAnswering",
)
def bert_large(p: Mapping[str, Any]) -> QuestionAnsweringWorkload:
    return _bert(p, layers=24, hidden=1024, heads=16, intermediate=4096)


@register_workload(
    name="test_bert",
    family="language",
    description="tiny BERT QA model (2 layers, hidden 64) for tests",
    batch_size=4,
    quick_batch_size=2,
    facts=SQUAD_BERT_BASE,
    sample_unit="sequence",
    params=(_seq_len(32), _vocab(1000), _ATTENTION),
    optimizer="adamw",
    tiny=True,
    tasks=_ENCODER_TASKS,
    extra=_encoder_extra(64, 2),
    architecture_source="transformers.BertForQuestionAnswering, 2 layers, hidden 64, 2 heads, FFN 128",
)
def test_bert(p: Mapping[str, Any]) -> QuestionAnsweringWorkload:
    return _bert(p, layers=2, hidden=64, heads=2, intermediate=128, positions=64)


# --------------------------------------------------------------------------------------------------------
# Decoder-only language models
# --------------------------------------------------------------------------------------------------------

# GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"): 36 layers, d_model
# 1280 for the large model (Table 2), context 1024 and batch 512 sequences (Sec. 2.3), BPE vocabulary of
# 50,257 (Sec. 2.2). 20 heads: the released gpt2-large config (n_head 20). The paper prints 762M
# parameters for this model; OpenAI released it as "774M", which is what the architecture has (tied
# embeddings counted once).
WEBTEXT = TaskFacts(
    dataset="WebText",
    source=(
        "https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf"
        " (Sec. 2.1 WebText, Sec. 2.3 context 1024 / batch 512, Table 2) ; "
        "https://huggingface.co/openai-community/gpt2-large/blob/main/config.json (n_head 20)"
    ),
    notes=(
        "WebText: slightly over 8 million documents, 40 GB of text (GPT-2 paper Sec. 2.1). The paper gives "
        "no number of training tokens, steps or epochs, so no training size is given here. It evaluates "
        "zero-shot on several benchmarks (Table 3) rather than on a held-out set with a target, so no "
        "target quality is given either."
    ),
)

# GPT-3 (Brown et al. 2020, arXiv:2005.14165): every model trained for 300B tokens (Sec. 2.2 and Table
# 2.2), context 2048 (Sec. 2.1), GPT-3 XL in Table 2.1: 1.3B parameters, 24 layers, d_model 2048, batch
# 1M tokens, lr 2.0e-4.
GPT3_PILE = TaskFacts(
    dataset="the GPT-3 training mix (filtered Common Crawl, WebText2, Books1, Books2, Wikipedia)",
    source="https://arxiv.org/abs/2005.14165 (Sec. 2.1, 2.2, Table 2.1, Table 2.2)",
    train_tokens=300e9,
    epochs=1,
    notes=(
        "300B tokens is the training budget of every GPT-3 model (not one pass: the paper samples its "
        "sources with different weights, some more than once), expressed as one 'epoch' of 300B tokens. "
        "No single target quality: the paper reports few-shot results on many benchmarks."
    ),
)

# OPT (Zhang et al. 2022, arXiv:2205.01068): OPT-1.3B in Table 1 (24 layers, 32 heads, d_model 2048,
# lr 2.0e-4, batch 1M tokens); the pre-training corpus has roughly 180B tokens (Sec. 2.3); context 2048
# (Sec. 2.1, as GPT-3). Vocab 50,272 (GPT-2 BPE padded) and FFN 8192: facebook/opt-1.3b config.json.
OPT_CORPUS = TaskFacts(
    dataset="the OPT pre-training corpus (RoBERTa corpus, the Pile subset, PushShift.io Reddit)",
    source=(
        "https://arxiv.org/abs/2205.01068 (Table 1, Sec. 2.2, Sec. 2.3) ; "
        "https://huggingface.co/facebook/opt-1.3b/blob/main/config.json ; "
        "https://github.com/facebookresearch/metaseq/blob/main/projects/OPT/MODEL_CARD.md"
    ),
    train_tokens=180e9,
    epochs=1,
    notes=(
        "180B tokens is the size of the pre-training corpus (paper Sec. 2.3, model card), counted as one "
        "epoch; the paper's learning-rate schedule decays over 300B tokens (Sec. 2.2). No target quality: "
        "results are zero/few-shot averages over many tasks."
    ),
)

# Llama 3 8B: architecture from "The Llama 3 Herd of Models" (arXiv:2407.21783) Table 3 (32 layers, model
# dim 4096, FFN 14336, 32 heads, 8 KV heads, vocab 128K, RoPE theta 500,000, peak lr 3e-4); exact vocab
# 128,256 and 8,192 positions from meta-llama/Meta-Llama-3-8B config.json; "pretrained on over 15 trillion
# tokens" and MMLU from the Llama 3 model card.
LLAMA3_DATA = TaskFacts(
    dataset="the Llama 3 pre-training mix (public web data)",
    source=(
        "https://arxiv.org/abs/2407.21783 (Table 3) ; "
        "https://github.com/meta-llama/llama3/blob/main/MODEL_CARD.md (over 15T tokens, 8k context) ; "
        "https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json"
    ),
    train_tokens=15e12,
    epochs=1,
    notes=(
        "The model card says 'over 15 trillion tokens': 15T is a lower bound. Training size counted as one "
        "epoch of that budget. No single target quality is given here: the model card reports many "
        "benchmarks."
    ),
)

_GPT2_LARGE_LR = 1e-4  # not published (GPT-2 Sec. 2.3: tuned by hand); AdamW's default here
_GPT3_XL_LR = 2.0e-4  # GPT-3 Table 2.1
_OPT_1_3B_LR = 2.0e-4  # OPT Table 1
_LLAMA3_8B_LR = 3e-4  # Llama 3 Herd paper Table 3


def _gpt2(p: Mapping[str, Any], *, layers: int, hidden: int, heads: int, positions: int,
          lr: float) -> CausalLMWorkload:
    from transformers import GPT2Config, GPT2LMHeadModel

    from .models.language import CausalLMWorkload

    _check_positions(p, positions, "this GPT-2-architecture model")
    config = GPT2Config(
        vocab_size=p["vocab_size"],
        n_positions=positions,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        # GPT-2's <|endoftext|> is the last id (50256); keep it inside smaller test vocabularies.
        bos_token_id=int(p["vocab_size"]) - 1,
        eos_token_id=int(p["vocab_size"]) - 1,
        use_cache=False,
        **_common_kwargs(p),
    )
    model = GPT2LMHeadModel(config)  # FFN 4*n_embd, GELU, pre-LN, tied input/output embeddings
    # The class name does not say which loss it is, so transformers warns before picking this one anyway.
    model.loss_type = "ForCausalLM"
    return CausalLMWorkload(model, int(p["seq_len"]), int(p["vocab_size"]), lr, int(p["context_len"]))


@register_workload(
    name="gpt2_large",
    family="language",
    description="GPT-2 large (774M) language-model pretraining, 1024-token context",
    # GPT-2 paper Sec. 2.3: "a larger batchsize of 512 is used" -- the global batch, in sequences.
    batch_size=512,
    quick_batch_size=1,
    facts=WEBTEXT,
    sample_unit="sequence",
    params=(_seq_len(1024, "tokens per sequence (GPT-2's context)"), _vocab(50_257), _ATTENTION,
            _context_len(1023, "tokens already in the KV cache when a decode step runs (1023: the step "
                         "that fills GPT-2's 1024 positions)")),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    architecture_source="Radford et al. 2019, Table 2 (36 layers, d_model 1280); 20 heads as released; "
    "transformers.GPT2LMHeadModel",
)
def gpt2_large(p: Mapping[str, Any]) -> CausalLMWorkload:
    return _gpt2(p, layers=36, hidden=1280, heads=20, positions=1024, lr=_GPT2_LARGE_LR)


@register_workload(
    name="gpt3_xl",
    family="language",
    description="GPT-3 XL (1.3B) language-model pretraining, 2048-token context, dense attention",
    # GPT-3 Table 2.1: a global batch of 1M tokens for XL = 2^20 / 2048 = 512 sequences (global, not per GPU).
    batch_size=512,
    quick_batch_size=1,
    facts=GPT3_PILE,
    sample_unit="sequence",
    params=(_seq_len(2048, "tokens per sequence (GPT-3's context)"), _vocab(50_257), _ATTENTION,
            _context_len(1024)),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    architecture_source="Brown et al. 2020 (arXiv:2005.14165) Table 2.1: 24 layers, d_model 2048, "
    "16 heads of 128 (see code); GPT-2 architecture via transformers.GPT2LMHeadModel",
    notes="Dense attention in every layer: GPT-3 alternated dense and locally banded sparse attention "
    "layers (Sec. 2.1), which this model does not reproduce.",
)
def gpt3_xl(p: Mapping[str, Any]) -> CausalLMWorkload:
    # Table 2.1 lists n_heads 24 and d_head 128 for XL, but 24 x 128 = 3072 != d_model 2048; every other
    # row has n_heads x d_head = d_model, so we keep d_head 128 and use 2048 / 128 = 16 heads (the
    # parameter count does not depend on the head split). GPT-3 uses GPT-2's model and tokenizer (50,257
    # BPE tokens, Sec. 2.1), with a 2048-token context. Attention is dense in every layer: GPT-3
    # alternates dense and locally banded sparse layers (Sec. 2.1, as in the Sparse Transformer), which is
    # not reproduced here; banded layers would do less attention work at 2048 tokens.
    return _gpt2(p, layers=24, hidden=2048, heads=16, positions=2048, lr=_GPT3_XL_LR)


@register_workload(
    name="opt_1_3b",
    family="language",
    description="OPT-1.3B language-model pretraining, 2048-token context",
    # OPT Table 1: a global batch of 1M tokens for 1.3B = 2^20 / 2048 = 512 sequences (global, not per GPU).
    batch_size=512,
    quick_batch_size=1,
    facts=OPT_CORPUS,
    sample_unit="sequence",
    params=(_seq_len(2048, "tokens per sequence (OPT's context)"), _vocab(50_272), _ATTENTION,
            _context_len(1024)),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    architecture_source="Zhang et al. 2022 (arXiv:2205.01068) Table 1; facebook/opt-1.3b config; "
    "transformers.OPTForCausalLM",
)
def opt_1_3b(p: Mapping[str, Any]) -> CausalLMWorkload:
    from transformers import OPTConfig, OPTForCausalLM

    from .models.language import CausalLMWorkload

    _check_positions(p, 2048, "OPT")
    config = OPTConfig(
        vocab_size=p["vocab_size"],
        hidden_size=2048,
        num_hidden_layers=24,
        ffn_dim=8192,
        num_attention_heads=32,
        max_position_embeddings=2048,  # OPT adds 2 to this internally (learned positions with offset 2)
        word_embed_proj_dim=2048,
        do_layer_norm_before=True,
        dropout=0.1,  # OPT Sec. 2.2: dropout 0.1 throughout
        use_cache=False,
        **_common_kwargs(p),
    )
    model = OPTForCausalLM(config)  # tied input/output embeddings
    return CausalLMWorkload(model, int(p["seq_len"]), int(p["vocab_size"]), _OPT_1_3B_LR, int(p["context_len"]))


def _llama(p: Mapping[str, Any], *, layers: int, hidden: int, intermediate: int, heads: int,
           kv_heads: int, positions: int, lr: float) -> CausalLMWorkload:
    from transformers import LlamaConfig, LlamaForCausalLM

    from .models.language import CausalLMWorkload

    config = LlamaConfig(
        vocab_size=p["vocab_size"],
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        # RoPE has no learned table: seq_len may exceed this, it only sets the nominal context.
        max_position_embeddings=positions,
        rms_norm_eps=1e-5,  # Meta-Llama-3-8B config.json
        tie_word_embeddings=False,
        use_cache=False,
        **_common_kwargs(p, rope_theta=500_000.0),  # Llama 3's RoPE base (Herd paper Table 3)
    )
    model = LlamaForCausalLM(config)  # SwiGLU FFN, RMSNorm, grouped-query attention, no biases
    # No position check: RoPE has no table, so neither seq_len nor context_len is bounded by it.
    return CausalLMWorkload(model, int(p["seq_len"]), int(p["vocab_size"]), lr, int(p["context_len"]))


@register_workload(
    name="llama3_8b",
    family="language",
    description="Llama 3 8B language-model pretraining, 8192-token context, grouped-query attention",
    # No per-GPU batch is published for Llama 3 8B; torchtitan's llama3_8b.toml (PyTorch's reference
    # pretraining recipe, https://github.com/pytorch/torchtitan) trains it at 1 sequence of 8192 per GPU.
    batch_size=1,
    quick_batch_size=1,
    facts=LLAMA3_DATA,
    sample_unit="sequence",
    params=(_seq_len(8192, "tokens per sequence (Llama 3's 8k context)"), _vocab(128_256), _ATTENTION,
            _context_len(1024)),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    architecture_source="Llama 3 Herd of Models (arXiv:2407.21783) Table 3; Meta-Llama-3-8B config; "
    "transformers.LlamaForCausalLM",
)
def llama3_8b(p: Mapping[str, Any]) -> CausalLMWorkload:
    return _llama(p, layers=32, hidden=4096, intermediate=14_336, heads=32, kv_heads=8, positions=8192,
                  lr=_LLAMA3_8B_LR)


@register_workload(
    name="test_gpt",
    family="language",
    description="tiny GPT-2 (2 layers, hidden 64) for tests",
    batch_size=4,
    quick_batch_size=1,
    facts=WEBTEXT,
    sample_unit="sequence",
    params=(_seq_len(32), _vocab(1000), _ATTENTION, _context_len(16)),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    tiny=True,
    architecture_source="transformers.GPT2LMHeadModel, 2 layers, hidden 64, 2 heads, 64 positions",
)
def test_gpt(p: Mapping[str, Any]) -> CausalLMWorkload:
    return _gpt2(p, layers=2, hidden=64, heads=2, positions=64, lr=_GPT2_LARGE_LR)


@register_workload(
    name="test_llama",
    family="language",
    description="tiny Llama (2 layers, hidden 64, 4 query heads sharing 2 KV heads) for tests",
    batch_size=4,
    quick_batch_size=1,
    facts=LLAMA3_DATA,
    sample_unit="sequence",
    params=(_seq_len(32), _vocab(1000), _ATTENTION, _context_len(16)),
    tasks=_DECODE_TASKS,
    optimizer="adamw",
    tiny=True,
    architecture_source="transformers.LlamaForCausalLM, 2 layers, hidden 64, FFN 128, 4 heads, 2 KV heads",
)
def test_llama(p: Mapping[str, Any]) -> CausalLMWorkload:
    return _llama(p, layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, positions=64,
                  lr=_LLAMA3_8B_LR)
