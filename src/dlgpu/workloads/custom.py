"""A user's own model: ``--model package.module:factory`` plus an input spec.

The factory is called with no arguments and must return an ``nn.Module``. The input spec lists the
model's positional inputs without the batch dimension, comma-separated, each ``SHAPE[:DTYPE[:HIGH]]``
with dimensions joined by ``x``: ``3x224x224`` (one float32 image), ``128:int64:30522`` (128 token ids
below 30522). The training loss is the model's own ``.loss`` when its output has one, else the mean of
its first output tensor: a stand-in that exercises backward at the right shapes, since dlgpu cannot
know the real loss."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput

from .spec import TaskFacts, WorkloadSpec

if TYPE_CHECKING:
    import torch

    from .models.custom import CustomWorkload


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    high: int | None

    def make(self, batch_size: int, device: torch.device) -> torch.Tensor:
        import torch

        shape = (batch_size, *self.shape)
        if self.dtype.is_floating_point:
            return torch.randn(shape, device=device, dtype=self.dtype)
        if self.dtype == torch.bool:
            return torch.ones(shape, device=device, dtype=torch.bool)
        return torch.randint(0, self.high or 2, shape, device=device, dtype=self.dtype)


def parse_inputs(text: str) -> list[InputSpec]:
    from .models.custom import DTYPES

    specs = []
    for part in text.split(","):
        fields = part.strip().split(":")
        if not fields[0] or len(fields) > 3:
            raise BadInput(f"{text}: each input is SHAPE[:DTYPE[:HIGH]], e.g. 3x224x224 or 128:int64:30522",
                           param="inputs")
        try:
            shape = tuple(int(d) for d in fields[0].lower().split("x"))
        except ValueError:
            raise BadInput(f"{text}: shape {fields[0]!r} must be integers joined by 'x'", param="inputs") from None
        if any(d <= 0 for d in shape):
            raise BadInput(f"{text}: dimensions must be positive", param="inputs")
        dtype_name = fields[1] if len(fields) > 1 else "float32"
        if dtype_name not in DTYPES:
            raise BadInput(f"{text}: dtype {dtype_name!r} is not one of {', '.join(DTYPES)}", param="inputs")
        high = None
        if len(fields) == 3:
            try:
                high = int(fields[2])
            except ValueError:
                raise BadInput(f"{text}: HIGH {fields[2]!r} must be an integer", param="inputs") from None
        specs.append(InputSpec(shape, DTYPES[dtype_name], high))
    return specs


def load_factory(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise BadInput(f"{target}: expected package.module:factory", param="model")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInput(f"{target}: cannot import {module_name!r} ({exc})", param="model") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BadInput(f"{target}: {module_name} has no callable {attr!r}", param="model")
    return factory


def custom_spec(target: str, inputs: str, batch_size: int = 8) -> WorkloadSpec:
    """A WorkloadSpec for a user's model; bad targets or input specs raise BadInput now, not mid-run."""
    factory = load_factory(target)
    input_specs = parse_inputs(inputs)

    def build(_params: Mapping[str, Any]) -> CustomWorkload:
        from torch import nn

        from .models.custom import CustomWorkload

        model = factory()
        if not isinstance(model, nn.Module):
            raise BadInput(f"{target}: the factory returned {type(model).__name__}, not an nn.Module", param="model")
        return CustomWorkload(model, input_specs)

    return WorkloadSpec(
        name=f"custom:{target}",
        family="custom",
        description=f"user model {target} on inputs {inputs}",
        factory=build,
        batch_size=batch_size,
        quick_batch_size=batch_size,
        facts=TaskFacts(dataset="user-supplied (no dataset facts)", source="--model"),
        sample_unit="sample",
        optimizer="adamw",
        notes="loss is the model's .loss or the mean of its first output (a stand-in)",
    )
