"""Recurrent workloads in plain PyTorch: a word-level LSTM language model and GNMT v2 translation.

Both use ``nn.LSTM`` (cuDNN on NVIDIA GPUs) in the sequence-first layout of the reference code they follow.
Batches are random token ids of full length: the references bucket or truncate real sentences, whose
average length is shorter, so a full-length batch is the costliest step of the real run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlgpu.errors import BadInput

from .base import SupervisedWorkload
from .registry import Param, TaskFacts, register_workload

LSTMState = tuple[torch.Tensor, torch.Tensor]


def _clip_grads(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    nn.utils.clip_grad_norm_(params, max_norm)


class ClippedSGD(torch.optim.SGD):
    """Plain SGD that clips the global gradient norm before each step.

    The clipping is inside ``step`` because workloads do not see the gap between backward and step (the
    harness's ``backward_step`` owns it). Under fp16 the harness's GradScaler unscales gradients before it
    calls ``step``, so the norm is taken on true gradients, as the reference recipes do."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, max_norm: float) -> None:
        super().__init__(params, lr=lr)
        self.max_norm = max_norm

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        _clip_grads(self, self.max_norm)
        return super().step(closure)


class ClippedAdam(torch.optim.Adam):
    """Adam that clips the global gradient norm before each step (see ``ClippedSGD`` for why here)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, max_norm: float) -> None:
        super().__init__(params, lr=lr)
        self.max_norm = max_norm

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        _clip_grads(self, self.max_norm)
        return super().step(closure)


# --------------------------------------------------------------------------------------------------------
# Word-level LSTM language model (pytorch/examples word_language_model)
# --------------------------------------------------------------------------------------------------------


class RNNModel(nn.Module):
    """pytorch/examples ``word_language_model/model.py`` RNNModel with ``--model LSTM``.

    Embedding -> dropout -> multi-layer LSTM (dropout between layers) -> dropout -> Linear to the
    vocabulary. ``tied`` shares the embedding with the output layer (Press & Wolf 2016; Inan et al. 2016),
    which needs the embedding and hidden sizes equal; here both are ``hidden``."""

    def __init__(self, vocab_size: int, hidden: int, num_layers: int, dropout: float, tied: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, hidden)
        self.rnn = nn.LSTM(hidden, hidden, num_layers, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab_size)
        if tied:
            self.decoder.weight = self.encoder.weight
        # The example's init_weights: uniform(-0.1, 0.1) embedding and decoder weights, zero decoder bias.
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not tied:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, hidden: LSTMState | None = None) -> torch.Tensor:
        """``tokens`` is (seq_len, batch); returns logits (seq_len, batch, vocab)."""
        emb = self.drop(self.encoder(tokens))
        output, _ = self.rnn(emb, hidden)
        logits: torch.Tensor = self.decoder(self.drop(output))
        return logits


class LSTMLanguageModelWorkload(SupervisedWorkload):
    """Truncated-BPTT language modelling: predict each next token of a (seq_len + 1, batch) window.

    The example carries the LSTM state from one batch to the next (detached); each step here starts from a
    zero state, which costs the same. Its loss is NLL on log-softmax; cross-entropy on logits is the same
    function in one op."""

    def __init__(self, model: RNNModel, seq_len: int, vocab_size: int, lr: float, clip: float) -> None:
        super().__init__(model, ClippedSGD(model.parameters(), lr=lr, max_norm=clip), "sgd")
        self.seq_len = seq_len
        self.vocab_size = vocab_size

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        # One (seq_len + 1)-token window per stream: inputs are [:-1], targets [1:] (the example's get_batch).
        return torch.randint(0, self.vocab_size, (self.seq_len + 1, batch_size), device=device)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(batch[:-1])
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[1:].reshape(-1))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(batch[:-1])
        return logits


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
        raise BadInput(f"--set dropout={p['dropout']}: must be in [0, 1)")


def _lstm_lm(p: Mapping[str, Any]) -> LSTMLanguageModelWorkload:
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


class BahdanauAttention(nn.Module):
    """Normalized Bahdanau (additive) attention, as NVIDIA's ``seq2seq/models/attention.py``.

    score(q, k) = g * (v / |v|) . tanh(W_q q + W_k k + b), softmax over source positions; the context is
    the softmax-weighted sum of the (unprojected) encoder outputs. Normalizing v (weight normalization,
    Salimans & Kingma 2016) is what "normalized" means in GNMT v2. Scores are computed for every
    (target, source) pair at once, a (batch, tgt, src, hidden) tensor, as the reference does."""

    def __init__(self, hidden: int, init_weight: float = 0.1) -> None:
        super().__init__()
        self.linear_q = nn.Linear(hidden, hidden, bias=False)
        self.linear_k = nn.Linear(hidden, hidden, bias=False)
        self.linear_att = nn.Parameter(torch.empty(hidden))
        self.normalize_scalar = nn.Parameter(torch.empty(1))
        self.normalize_bias = nn.Parameter(torch.empty(hidden))
        # The reference's init: uniform(-0.1, 0.1) weights, g = 1/sqrt(hidden), b = 0.
        for w in (self.linear_q.weight, self.linear_k.weight, self.linear_att):
            nn.init.uniform_(w, -init_weight, init_weight)
        nn.init.constant_(self.normalize_scalar, hidden**-0.5)
        nn.init.zeros_(self.normalize_bias)

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``query`` (tgt, batch, hidden), ``keys`` (src, batch, hidden) -> context (tgt, batch, hidden)."""
        q = self.linear_q(query).transpose(0, 1)  # (B, T, H)
        k = self.linear_k(keys).transpose(0, 1)  # (B, S, H)
        summed = q.unsqueeze(2) + k.unsqueeze(1) + self.normalize_bias  # (B, T, S, H)
        v = self.linear_att / self.linear_att.norm() * self.normalize_scalar
        scores = torch.tanh(summed).matmul(v)  # (B, T, S)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys.transpose(0, 1))  # (B, T, H)
        return context.transpose(0, 1)


class GNMTEncoder(nn.Module):
    """4 LSTM layers: bidirectional first, then unidirectional; residual connections from the third."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([
            nn.LSTM(hidden, hidden, bidirectional=True),
            nn.LSTM(2 * hidden, hidden),
            nn.LSTM(hidden, hidden),
            nn.LSTM(hidden, hidden),
        ])

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        # The reference packs padded sequences for layer 1; full-length batches need no packing.
        x, _ = self.layers[0](self.dropout(emb))
        x, _ = self.layers[1](self.dropout(x))
        for layer in self.layers[2:]:
            residual = x
            x, _ = layer(self.dropout(x))
            x = x + residual
        return x


class GNMTDecoder(nn.Module):
    """GNMT v2 decoder: the first LSTM layer's output queries the attention, and the attention context is
    concatenated with the input of every later decoder layer (residual connections from the third)."""

    def __init__(self, vocab_size: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.att_rnn = nn.LSTM(hidden, hidden)
        self.attention = BahdanauAttention(hidden)
        self.layers = nn.ModuleList([nn.LSTM(2 * hidden, hidden) for _ in range(3)])
        self.classifier = nn.Linear(hidden, vocab_size)

    def forward(self, emb: torch.Tensor, memory: torch.Tensor,
                state: list[LSTMState] | None = None) -> tuple[torch.Tensor, list[LSTMState]]:
        """``emb`` (tgt, batch, hidden) target embeddings, ``memory`` (src, batch, hidden) encoder outputs.

        Runs all target positions at once (teacher forcing) or one at a time (decoding) from ``state``."""
        states: list[LSTMState | None] = list(state) if state is not None else [None] * 4
        new: list[LSTMState] = []
        x, s = self.att_rnn(self.dropout(emb), states[0])
        new.append(s)
        context = self.attention(x, memory)
        x, s = self.layers[0](self.dropout(torch.cat((x, context), dim=2)), states[1])
        new.append(s)
        for i, layer in enumerate(self.layers[1:], start=2):
            residual = x
            x, s = layer(self.dropout(torch.cat((x, context), dim=2)), states[i])
            new.append(s)
            x = x + residual
        logits: torch.Tensor = self.classifier(x)
        return logits, new


class GNMT(nn.Module):
    """GNMT v2: shared source/target embedding, residual LSTM encoder, attention LSTM decoder."""

    def __init__(self, vocab_size: int, hidden: int, dropout: float) -> None:
        super().__init__()
        # One embedding for both languages (the reference's share_embedding=True, shared BPE vocabulary).
        self.embedder = nn.Embedding(vocab_size, hidden, padding_idx=PAD)
        nn.init.uniform_(self.embedder.weight, -0.1, 0.1)
        self.encoder = GNMTEncoder(hidden, dropout)
        self.decoder = GNMTDecoder(vocab_size, hidden, dropout)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        memory: torch.Tensor = self.encoder(self.embedder(src))
        return memory

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (tgt, batch, vocab) for ``src`` (src, batch) and ``tgt_in`` (tgt, batch)."""
        logits, _ = self.decoder(self.embedder(tgt_in), self.encode(src))
        return logits

    def greedy_decode(self, src: torch.Tensor, steps: int) -> torch.Tensor:
        """Translate ``src`` token by token, always taking the most likely word: (steps, batch) ids."""
        memory = self.encode(src)
        tokens = torch.full((1, src.size(1)), BOS, dtype=torch.long, device=src.device)
        state: list[LSTMState] | None = None
        out = []
        for _ in range(steps):
            logits, state = self.decoder(self.embedder(tokens), memory, state)
            tokens = logits.argmax(dim=-1)
            out.append(tokens)
        return torch.cat(out, dim=0)


class GNMTWorkload(SupervisedWorkload):
    """Teacher-forced translation training with label-smoothed cross-entropy; inference decodes greedily.

    Inference runs ``tgt_len`` decoder steps without stopping at EOS (random weights never emit it
    reliably). The reference translates with beam search, which multiplies the decoder's work by about
    the beam width; greedy decoding is its beam-1 case."""

    def __init__(self, model: GNMT, vocab_size: int, src_len: int, tgt_len: int) -> None:
        # Adam, lr 2e-3 (README "Default configuration"); gradient norm clipped at 5 (train.py --grad-clip).
        super().__init__(model, ClippedAdam(model.parameters(), lr=2e-3, max_norm=5.0), "adam")
        self.gnmt = model
        self.vocab_size = vocab_size
        self.src_len = src_len
        self.tgt_len = tgt_len

    def make_batch(self, batch_size: int, device: torch.device,
                   channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.randint(_FIRST_WORD, self.vocab_size, (self.src_len, batch_size), device=device)
        tgt = torch.randint(_FIRST_WORD, self.vocab_size, (self.tgt_len + 1, batch_size), device=device)
        tgt[0] = BOS
        return src, tgt

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        src, tgt = batch
        logits = self.gnmt(src, tgt[:-1])
        # Label smoothing 0.1 (README); the reference's LabelSmoothing is this loss, summed not averaged.
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt[1:].reshape(-1),
                               ignore_index=PAD, label_smoothing=0.1)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.gnmt.greedy_decode(batch[0], self.tgt_len)


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
