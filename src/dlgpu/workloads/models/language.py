"""The torch side of the language workloads (``dlgpu.workloads.language`` declares them): the workload
classes for extractive QA and causal language modelling, including token-by-token decoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from ..base import StepContext, SupervisedWorkload, adamw

Batch = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------------------
# Workload classes
# --------------------------------------------------------------------------------------------------------


class QuestionAnsweringWorkload(SupervisedWorkload):
    """Extractive QA (SQuAD): predict answer start/end positions; the model's own span loss.

    The batch is what BERT's SQuAD preprocessing produces for one feature: question + context packed into
    ``seq_len`` tokens, segment ids 0 for the question and 1 for the context, and the answer span."""

    def __init__(self, model: nn.Module, seq_len: int, vocab_size: int, lr: float) -> None:
        super().__init__(model, adamw(model, lr=lr), "adamw")
        self.seq_len = seq_len
        self.vocab_size = vocab_size

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Batch:
        s = self.seq_len
        input_ids = torch.randint(0, self.vocab_size, (batch_size, s), device=device)
        # Every position is a real token (no padding), so SDPA may take its fastest unmasked kernel; real
        # SQuAD features are padded to seq_len, which costs the same matmuls.
        attention_mask = torch.ones(batch_size, s, dtype=torch.long, device=device)
        # Question in the first quarter (segment 0), context after it (segment 1).
        token_type_ids = (torch.arange(s, device=device) >= s // 4).long().expand(batch_size, s).contiguous()
        start = torch.randint(s // 4, s, (batch_size,), device=device)
        end = torch.minimum(start + torch.randint(0, 8, (batch_size,), device=device),
                            torch.full_like(start, s - 1))
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "start_positions": start,
            "end_positions": end,
        }

    def loss(self, batch: Batch) -> torch.Tensor:
        loss: torch.Tensor = self.model(**batch).loss
        return loss

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
        return out.start_logits, out.end_logits


@dataclass
class DecodeBatch:
    """One decode step's input: a new token per sequence and the KV cache of ``context_len`` tokens before it."""

    input_ids: torch.Tensor  # (batch, 1)
    cache: DynamicCache
    context_len: int


class CausalLMWorkload(SupervisedWorkload):
    """Next-token prediction on ``seq_len``-token sequences (pretraining); loss via ``labels=input_ids``.

    Inference (task ``infer``) is one forward pass over whole sequences returning all logits (a perplexity
    evaluation or a prompt prefill), without a KV cache. Task ``decode`` is generation: one new token per
    sequence attending to a KV cache that already holds ``context_len`` tokens (Hugging Face's
    ``DynamicCache``, filled by a prefill that is not timed)."""

    def __init__(self, model: nn.Module, seq_len: int, vocab_size: int, lr: float, context_len: int = 1) -> None:
        super().__init__(model, adamw(model, lr=lr), "adamw")
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.context_len = context_len

    def make_decode_batch(self, batch_size: int, device: torch.device, ctx: StepContext) -> DecodeBatch:
        """Prefill ``context_len`` random tokens into a fresh cache (under ``ctx``'s autocast, so the cache
        has the dtype generation at this precision keeps), and draw the token the step will feed."""
        ids = torch.randint(0, self.vocab_size, (batch_size, self.context_len + 1), device=device)
        cache = DynamicCache()
        with torch.no_grad(), ctx.autocast():
            # logits_to_keep=1: a prefill computes the next token's logits only, not the whole context's.
            self.model(input_ids=ids[:, :-1], past_key_values=cache, use_cache=True, logits_to_keep=1)
        return DecodeBatch(ids[:, -1:], cache, self.context_len)

    def decode_step(self, batch: DecodeBatch, ctx: StepContext) -> torch.Tensor:
        """Logits (batch, 1, vocab) for the next token. The model appends the token's keys and values to the
        cache (``DynamicCache`` concatenates: a new tensor of context_len + 1 per layer, as in Hugging Face
        generation); cropping it back to ``context_len`` afterwards (views, no copy) makes every timed
        step attend to the same context instead of one that grows by a token per step."""
        with ctx.autocast():
            logits: torch.Tensor = self.model(input_ids=batch.input_ids, past_key_values=batch.cache,
                                              use_cache=True).logits
        grown = batch.cache.get_seq_length() - batch.context_len
        if grown > 0:
            batch.cache.crop(-grown)  # negative: remove that many tokens (transformers 4.x and 5.x alike)
        return logits

    def kv_cache_bytes(self, batch_size: int, element_bytes: int) -> int:
        """Bytes of the KV cache at ``context_len``: 2 (keys and values) x layers x context_len x
        (KV heads x head dim) x ``element_bytes`` x batch."""
        cfg: Any = self.model.config  # a transformers PretrainedConfig (nn.Module's attribute typing says Tensor)
        heads = int(cfg.num_attention_heads)
        kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        return 2 * int(cfg.num_hidden_layers) * self.context_len * kv_heads * head_dim * element_bytes * batch_size

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Batch:
        # Pretraining packs documents into full-length sequences: no padding, no attention mask.
        ids = torch.randint(0, self.vocab_size, (batch_size, self.seq_len), device=device)
        return {"input_ids": ids}

    def loss(self, batch: Batch) -> torch.Tensor:
        # The model shifts labels by one position itself.
        loss: torch.Tensor = self.model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        return loss

    def forward(self, batch: Batch) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=batch["input_ids"]).logits
        return logits
