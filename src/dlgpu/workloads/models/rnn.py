"""The torch side of the recurrent workloads (``dlgpu.workloads.rnn`` declares them): gradient-clipping
optimizers, the word-level LSTM language model and GNMT v2, and their workload classes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..base import SupervisedWorkload
from ..rnn import _FIRST_WORD, BOS, PAD

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


# --------------------------------------------------------------------------------------------------------
# GNMT v2 (NVIDIA DeepLearningExamples PyTorch/Translation/GNMT)
# --------------------------------------------------------------------------------------------------------


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
