"""Factories for the ``--model`` tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from torch import nn


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


class TokenModel(nn.Module):
    """Two integer inputs, like a language model's ids and segment ids."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(100, 8)
        self.seg = nn.Embedding(2, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids, seg):  # type: ignore[no-untyped-def]
        return {"logits": self.out(self.tok(ids) + self.seg(seg))}


def not_a_module() -> str:
    return "nope"
