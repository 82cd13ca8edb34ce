"""Recurrent workloads: the tiny LSTM LM and GNMT really train on CPU; full sizes are counted on meta."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
import torch
from torch import nn

from dlgpu.errors import BadInput
from dlgpu.workloads import PlainContext, WorkloadInstance, get_workload
from dlgpu.workloads.models.rnn import GNMT, BahdanauAttention, ClippedSGD, GNMTWorkload

CPU = torch.device("cpu")


def _build(name: str, **overrides: str) -> WorkloadInstance:
    torch.manual_seed(0)
    spec = get_workload(name)
    return spec.build(spec.resolve(overrides))


@pytest.mark.parametrize("name", ["test_lstm_lm", "test_gnmt"])
def test_tiny_train_step_updates_parameters(name: str) -> None:
    w = _build(name)
    batch = w.make_batch(4, CPU)
    before = [p.detach().clone() for p in w.parameters()]
    w.train(True)
    w.train_step(batch, PlainContext())
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, w.parameters(), strict=True)]
    assert all(changed), f"{sum(not c for c in changed)} parameter tensors did not change"


def test_lstm_lm_shapes() -> None:
    w = _build("test_lstm_lm")
    batch = w.make_batch(4, CPU)
    assert batch.shape == (9, 4)  # seq_len + 1 tokens (inputs [:-1], targets [1:]), sequence-first
    w.train(False)
    with torch.inference_mode():
        logits = w.infer_step(batch, PlainContext())
    assert logits.shape == (8, 4, 100)


def test_lstm_lm_tied_shares_the_embedding() -> None:
    w = _build("test_lstm_lm", tied="true")
    model = w.modules["model"]
    assert model.decoder.weight is model.encoder.weight  # type: ignore[union-attr]


def test_clipped_sgd_clips_the_global_norm_before_stepping() -> None:
    p = nn.Parameter(torch.zeros(4))
    opt = ClippedSGD([p], lr=20.0, max_norm=0.25)
    p.grad = torch.full((4,), 10.0)  # norm 20
    opt.step()
    assert torch.allclose(p.grad.norm(), torch.tensor(0.25))
    assert torch.allclose(p.detach(), torch.full((4,), -20.0 * 0.125))


def test_gnmt_structure() -> None:
    w = _build("test_gnmt")
    model = w.modules["model"]
    assert isinstance(model, GNMT)
    enc, dec = model.encoder, model.decoder
    assert enc.layers[0].bidirectional and not any(layer.bidirectional for layer in enc.layers[1:])
    assert enc.layers[1].input_size == 2 * 32  # takes both directions
    # Every decoder layer after the attention layer takes [output, attention context].
    assert [layer.input_size for layer in dec.layers] == [64, 64, 64]
    assert model.embedder.num_embeddings == 100


def test_attention_weights_are_normalized() -> None:
    torch.manual_seed(0)
    att = BahdanauAttention(8)
    keys = torch.randn(5, 2, 8)
    # Identical keys: every score is equal, so the context is that key whatever the query.
    same = keys[:1].expand(5, 2, 8)
    ctx = att(torch.randn(3, 2, 8), same)
    assert ctx.shape == (3, 2, 8)
    assert torch.allclose(ctx, same[:1].expand(3, 2, 8), atol=1e-6)


def test_gnmt_greedy_decoding_matches_teacher_forcing() -> None:
    """Decoding step by step (carrying LSTM states) and one teacher-forced pass over its own output must
    agree: the two paths share one decoder."""
    w = _build("test_gnmt")
    assert isinstance(w, GNMTWorkload)
    src, _ = w.make_batch(3, CPU)
    w.train(False)
    with torch.inference_mode():
        out = w.infer_step((src, _), PlainContext())
        assert out.shape == (8, 3)
        tgt_in = torch.cat([torch.full((1, 3), 2), out[:-1]])
        logits = w.gnmt(src, tgt_in)
    assert torch.equal(logits.argmax(-1), out)


def test_full_size_counts_on_meta() -> None:
    with torch.device("meta"):
        lm = _build("lstm_lm")
        gnmt = _build("gnmt")
    # Embedding 33,278 x 650 + 2 LSTM layers 4*650*(650+650) + 2 bias vectors each + decoder 650 -> 33,278.
    lstm_layer = 4 * 650 * 1300 + 2 * 4 * 650
    assert lm.num_parameters() == 33_278 * 650 + 2 * lstm_layer + 650 * 33_278 + 33_278 == 50_065_078
    # Shared embedding 33.1M, encoder 46.2M, decoder 48.3M + classifier 33.1M.
    assert gnmt.num_parameters() == 160_671_297
    assert all(p.device.type == "meta" for p in gnmt.parameters())


def test_task_sizes_and_defaults() -> None:
    lm = get_workload("lstm_lm")
    assert lm.defaults()["seq_len"] == 35 and lm.batch_size == 20 and lm.optimizer == "sgd"
    samples, _ = lm.task_samples("train", lm.defaults()) or (0.0, "")
    assert samples == pytest.approx(40 * 2_088_628 / 35)
    g = get_workload("gnmt")
    assert (g.defaults()["src_len"], g.defaults()["tgt_len"], g.batch_size) == (50, 50, 128)
    assert g.family == lm.family == "rnn"
    assert g.sample_unit == lm.sample_unit == "sequence"


def test_bad_dropout_is_bad_input() -> None:
    with pytest.raises(BadInput, match="dropout"):
        _build("test_lstm_lm", dropout="1.5")


class _BF16Context(PlainContext):
    """What the harness does at bf16, on CPU."""

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("name", ["test_lstm_lm", "test_gnmt"])
def test_train_step_under_bf16_autocast(name: str) -> None:
    w = _build(name)
    batch = w.make_batch(4, CPU)
    w.train(True)
    w.train_step(batch, _BF16Context())
    assert all(torch.isfinite(p).all() for p in w.parameters())
