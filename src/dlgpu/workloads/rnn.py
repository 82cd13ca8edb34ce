"""Recurrent workloads in plain PyTorch: a word-level LSTM language model and GNMT v2 translation.

Both use ``nn.LSTM`` (cuDNN on NVIDIA GPUs) in the sequence-first layout of the reference code they follow.
Batches are random token ids of full length: the references bucket or truncate real sentences, whose
average length is shorter, so a full-length batch is the costliest step of the real run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput

from .registry import Param, TaskFacts, register_workload

if TYPE_CHECKING:
    from .models.rnn import GNMTWorkload, LSTMLanguageModelWorkload


# --------------------------------------------------------------------------------------------------------
# Word-level LSTM language model (pytorch/examples word_language_model)
# --------------------------------------------------------------------------------------------------------

# WikiText-2 (Merity et al. 2016, arXiv:1609.07843, Table 1): 2,088,628 training tokens, vocabulary 33,278
# (valid 217,646 and test 245,569 tokens). pytorch/examples word_language_model README: `--emsize 650
# --nhid 650 --dropout 0.5 --epochs 40` reaches test perplexity 80.97; main.py defaults: 2 layers, lr 20
# (plain SGD), clip 0.25, batch 20, bptt 35.
WIKITEXT2 = TaskFacts(
    dataset="WikiText-2",
    source=(
        "https://arxiv.org/abs/1609.07843 (Table 1) ; "
        "https://github.com/pytorch/examples/tree/main/word_language_model (README and main.py)"
    ),
    train_tokens=2_088_628,
    epochs=40,
    target_quality="test perplexity 80.97 (pytorch/examples README, 650-unit untied LSTM, 40 epochs)",
    notes=(
        "Samples are bptt windows of seq_len tokens per stream (the example's batch is 20 streams x 35 "
        "tokens). The test set (245,569 tokens) is not given as eval_samples because its number of "
        "sequences depends on seq_len. The example adds an <eos> per line, so its token stream is slightly "
        "longer than the paper's count."
    ),
)

_LSTM_LR = 20.0  # main.py --lr default: plain SGD (the example updates p.data -= lr * grad by hand)
_LSTM_CLIP = 0.25  # main.py --clip default


def _lstm_params(seq_len: int, vocab: int, hidden: int, layers: int, dropout: float) -> tuple[Param, ...]:
    return (
        Param("seq_len", seq_len, "BPTT length: tokens per sequence (the example's --bptt)"),
        Param("vocab_size", vocab, "vocabulary size", minimum=2),
        Param("hidden_size", hidden, "embedding and LSTM hidden size (the example's --emsize/--nhid)"),
        Param("num_layers", layers, "LSTM layers"),
        Param("dropout", dropout, "dropout probability", minimum=0),
        Param("tied", False, "tie the embedding and output weights (the example's --tied)"),
    )


def _check_dropout(p: Mapping[str, Any]) -> None:
    if not 0 <= float(p["dropout"]) < 1:
        raise BadInput(f"dropout={p['dropout']}: must be in [0, 1)", param="overrides")


def _lstm_lm(p: Mapping[str, Any]) -> LSTMLanguageModelWorkload:
    from .models.rnn import LSTMLanguageModelWorkload, RNNModel

    _check_dropout(p)
    model = RNNModel(int(p["vocab_size"]), int(p["hidden_size"]), int(p["num_layers"]),
                     float(p["dropout"]), bool(p["tied"]))
    return LSTMLanguageModelWorkload(model, int(p["seq_len"]), int(p["vocab_size"]), _LSTM_LR, _LSTM_CLIP)


@register_workload(
    name="lstm_lm",
    family="rnn",
    description="2-layer 650-unit LSTM word language model on WikiText-2 (pytorch/examples)",
    batch_size=20,  # main.py --batch_size default
    quick_batch_size=20,
    facts=WIKITEXT2,
    sample_unit="sequence",
    params=_lstm_params(35, 33_278, 650, 2, 0.5),
    optimizer="sgd",
    architecture_source="pytorch/examples word_language_model RNNModel (LSTM), --emsize 650 --nhid 650 "
    "--dropout 0.5; Zaremba et al. 2014 (arXiv:1409.2329) medium model",
    notes="Plain SGD, lr 20, gradient norm clipped to 0.25 inside the optimizer step, as the example.",
)
def lstm_lm(p: Mapping[str, Any]) -> LSTMLanguageModelWorkload:
    return _lstm_lm(p)


@register_workload(
    name="test_lstm_lm",
    family="rnn",
    description="tiny LSTM language model (vocab 100, hidden 32) for tests",
    batch_size=4,
    quick_batch_size=4,
    facts=WIKITEXT2,
    sample_unit="sequence",
    params=_lstm_params(8, 100, 32, 2, 0.5),
    optimizer="sgd",
    tiny=True,
    architecture_source="pytorch/examples word_language_model RNNModel (LSTM), tiny",
)
def test_lstm_lm(p: Mapping[str, Any]) -> LSTMLanguageModelWorkload:
    return _lstm_lm(p)


# --------------------------------------------------------------------------------------------------------
# GNMT v2 (NVIDIA DeepLearningExamples PyTorch/Translation/GNMT)
# --------------------------------------------------------------------------------------------------------

# Special token ids of the NVIDIA implementation (seq2seq/data/config.py): PAD 0, UNK 1, BOS 2, EOS 3.
PAD, BOS = 0, 2
_FIRST_WORD = 4


# NVIDIA DeepLearningExamples GNMT v2 README: WMT16 English-German, shared 32,320-token BPE vocabulary,
# hidden 1024, 4+4 layers, dropout 0.2, Adam, label smoothing 0.1, batch 128 per GPU, max sequence
# length 50, 6 epochs; evaluation on newstest2014 (3,003 sentences).
WMT16_EN_DE = TaskFacts(
    dataset="WMT16 English-German",
    source=(
        "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Translation/GNMT (README) ; "
        "https://www.statmt.org/wmt16/translation-task.html ; https://www.statmt.org/wmt14/ (newstest2014)"
    ),
    epochs=6,
    eval_samples=3003,
    eval_dataset="newstest2014 English-German",
    notes=(
        "The number of training sentence pairs and the README's BLEU could not be checked while this was "
        "written (no network), so train_samples and target_quality are left None rather than guessed. "
        "Training batches are full length (src_len/tgt_len tokens); real batches hold shorter sentences."
    ),
)


def _gnmt_params(length: int, vocab: int, hidden: int) -> tuple[Param, ...]:
    return (
        Param("src_len", length, "source tokens per sentence (the README's maximum training length)"),
        Param("tgt_len", length, "target tokens per sentence (decoder steps)"),
        Param("vocab_size", vocab, "shared BPE vocabulary size", minimum=_FIRST_WORD + 1),
        Param("hidden_size", hidden, "embedding, LSTM and attention size"),
        Param("dropout", 0.2, "dropout probability", minimum=0),
    )


def _gnmt(p: Mapping[str, Any]) -> GNMTWorkload:
    from .models.rnn import GNMT, GNMTWorkload

    _check_dropout(p)
    model = GNMT(int(p["vocab_size"]), int(p["hidden_size"]), float(p["dropout"]))
    return GNMTWorkload(model, int(p["vocab_size"]), int(p["src_len"]), int(p["tgt_len"]))


@register_workload(
    name="gnmt",
    family="rnn",
    description="GNMT v2 English-German translation (NVIDIA DeepLearningExamples), 8 LSTM layers, 1024 units",
    batch_size=128,  # README: batch size 128 per GPU
    quick_batch_size=8,
    facts=WMT16_EN_DE,
    sample_unit="sequence",
    params=_gnmt_params(50, 32_320, 1024),
    optimizer="adam",
    architecture_source="Wu et al. 2016 (arXiv:1609.08144) as GNMT v2 in NVIDIA DeepLearningExamples "
    "PyTorch/Translation/GNMT (normalized Bahdanau attention feeding every decoder layer)",
)
def gnmt(p: Mapping[str, Any]) -> GNMTWorkload:
    return _gnmt(p)


@register_workload(
    name="test_gnmt",
    family="rnn",
    description="tiny GNMT v2 (vocab 100, hidden 32) for tests",
    batch_size=4,
    quick_batch_size=4,
    facts=WMT16_EN_DE,
    sample_unit="sequence",
    params=_gnmt_params(8, 100, 32),
    optimizer="adam",
    tiny=True,
    architecture_source="GNMT v2 structure, tiny",
)
def test_gnmt(p: Mapping[str, Any]) -> GNMTWorkload:
    return _gnmt(p)
