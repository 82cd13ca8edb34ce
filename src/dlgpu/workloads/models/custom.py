"""The torch side of a user's own model (``dlgpu.workloads.custom`` parses ``--model`` and ``--input``):
the input dtypes, the stand-in loss and the workload class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..base import SupervisedWorkload, adamw

if TYPE_CHECKING:
    from ..custom import InputSpec

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    loss = getattr(out, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    values = out.values() if isinstance(out, Mapping) else out
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v
    raise TypeError("the model returned no floating-point tensor to build a loss from")


class CustomWorkload(SupervisedWorkload):
    def __init__(self, model: nn.Module, inputs: list[InputSpec]) -> None:
        super().__init__(model, adamw(model), "adamw")
        self.inputs = inputs

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        return [s.make(batch_size, device) for s in self.inputs]

    def loss(self, batch: Any) -> torch.Tensor:
        return _first_tensor(self.model(*batch)).float().mean()

    def forward(self, batch: Any) -> Any:
        return self.model(*batch)
