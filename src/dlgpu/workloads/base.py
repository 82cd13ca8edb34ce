"""What a workload is once built: models on a device, a synthetic batch, a training step, an inference step.

The harness owns precision (autocast, gradient scaling) and timing; a workload only says what one step
does, through a ``StepContext`` the harness hands it. That keeps multi-model steps (DCGAN's discriminator
then generator update) as easy to write as a single ``loss.backward()``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn


class StepContext(Protocol):
    """Given by the harness to every step: precision is applied here, not in workloads."""

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast region for forward and loss (a no-op context at fp32/tf32)."""
        ...

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward (through the gradient scaler at fp16), optimizer step."""
        ...


class PlainContext:
    """fp32 context with no autocast and no scaler: for tests and hand-written loops."""

    def autocast(self) -> AbstractContextManager[Any]:
        import torch

        return torch.autocast("cpu", enabled=False)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class WorkloadInstance(ABC):
    """A built workload. Subclasses set ``modules`` and ``optimizers`` in ``__init__``."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    optimizer_kind: str  # "sgd-momentum" | "adamw" | "adam" | "sgd"

    @abstractmethod
    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        """A synthetic batch of the real shape and dtype (random data, fixed by the global seed)."""

    @abstractmethod
    def train_step(self, batch: Any, ctx: StepContext) -> None:
        """Forward + loss + backward + optimizer step."""

    @abstractmethod
    def infer_step(self, batch: Any, ctx: StepContext) -> Any:
        """Forward only; the harness wraps it in ``torch.inference_mode`` and eval mode."""

    def make_decode_batch(self, batch_size: int, device: torch.device, ctx: StepContext) -> Any:
        """The state one decode step starts from: a KV cache already holding the context (built by a prefill
        under ``ctx``'s autocast, so its dtype is the one generation really keeps) and one new token per
        sequence. Only workloads whose spec lists ``decode`` in ``tasks`` implement it; called in eval mode."""
        raise NotImplementedError(f"{type(self).__name__} does not decode token by token")

    def decode_step(self, batch: Any, ctx: StepContext) -> Any:
        """One generated token per sequence against the KV cache of ``make_decode_batch``, leaving the cache
        as it found it so that every step does the same work; the harness wraps it in ``inference_mode``."""
        raise NotImplementedError(f"{type(self).__name__} does not decode token by token")

    def parameters(self) -> Iterator[nn.Parameter]:
        for m in self.modules.values():
            yield from m.parameters()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)


class SupervisedWorkload(WorkloadInstance):
    """One model, one loss, one optimizer: the common case. Subclasses implement ``loss`` and ``forward``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, optimizer_kind: str) -> None:
        self.model = model
        self.modules = {"model": model}
        self.optimizers = {"model": optimizer}
        self.optimizer_kind = optimizer_kind

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor: ...

    @abstractmethod
    def forward(self, batch: Any) -> Any: ...

    def train_step(self, batch: Any, ctx: StepContext) -> None:
        with ctx.autocast():
            loss = self.loss(batch)
        ctx.backward_step(loss, self.optimizers["model"])

    def infer_step(self, batch: Any, ctx: StepContext) -> Any:
        with ctx.autocast():
            return self.forward(batch)


def sgd_momentum(model: nn.Module, lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SGD with momentum, the CNN recipe (torchvision references: lr 0.1, momentum 0.9, wd 1e-4)."""
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def adamw(model: nn.Module, lr: float = 1e-4, weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """AdamW, the transformer recipe. ``foreach`` is left to PyTorch's default for the device."""
    import torch

    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
