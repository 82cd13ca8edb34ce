"""What a workload is before it is built: its parameters, the facts of the real task it stands for, and
the tasks it can run. Torch-free (not even transitively), so that listing and describing workloads needs
no torch; building one (``WorkloadSpec.build``) runs the family's factory, which imports torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput

if TYPE_CHECKING:
    from .base import WorkloadInstance

ParamValue = int | float | str | bool


@dataclass(frozen=True)
class Param:
    """A shape parameter users may override with ``--set name=value``."""

    name: str
    default: ParamValue
    help: str
    choices: tuple[ParamValue, ...] | None = None
    minimum: float | None = 1
    maximum: float | None = None
    """The largest value taken (None: no bound); bad input above it, the message giving ``help`` as the reason."""

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def parse(self, text: str, workload: str) -> ParamValue:
        kind = type(self.default)
        try:
            if kind is bool:
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                value: ParamValue = low in ("true", "1", "yes")
            else:
                value = kind(text)
        except ValueError:
            raise BadInput(f"{self.name}={text}: {workload}'s {self.name} must be {self.type_name}",
                           param="overrides") from None
        if self.choices is not None and value not in self.choices:
            valid = ", ".join(str(c) for c in self.choices)
            raise BadInput(f"{self.name}={text}: valid values for {workload} are {valid}", param="overrides")
        if (
            self.minimum is not None
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value < self.minimum
        ):
            raise BadInput(f"{self.name}={text}: must be at least {self.minimum:g}", param="overrides")
        if (
            self.maximum is not None
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and value > self.maximum
        ):
            raise BadInput(f"{self.name}={text}: must be at most {self.maximum:g} for {workload} ({self.help})",
                           param="overrides")
        return value


@dataclass(frozen=True)
class TaskFacts:
    """The real task a workload stands for, with the source of every figure.

    ``train_samples`` counts samples in one epoch; for language models trained on a token budget give
    ``train_tokens`` instead and the number of samples follows from the ``seq_len`` parameter."""

    dataset: str
    source: str
    train_samples: int | None = None
    train_tokens: float | None = None
    dataset_bytes: int | None = None
    epochs: float | None = None
    target_quality: str | None = None
    eval_samples: int | None = None
    eval_dataset: str | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


Factory = Callable[[Mapping[str, Any]], "WorkloadInstance"]


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    family: str  # vision | detection | language | rnn | generative | llm | tabular | custom
    description: str
    factory: Factory
    batch_size: int
    quick_batch_size: int
    facts: TaskFacts
    sample_unit: str = "image"
    params: tuple[Param, ...] = ()
    channels_last: bool = False
    optimizer: str = "sgd-momentum"
    tiny: bool = False
    architecture_source: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # What the built instance can run: every workload trains and infers; decoder-only language models also
    # decode (one new token per sequence against a KV cache, ``WorkloadInstance.decode_step``).
    tasks: tuple[str, ...] = ("train", "infer")

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def resolve(self, overrides: Mapping[str, str | ParamValue]) -> dict[str, ParamValue]:
        """Defaults with ``overrides`` applied and type-checked. Unknown keys are bad input."""
        by_name = {p.name: p for p in self.params}
        values = self.defaults()
        for key, raw in overrides.items():
            if key not in by_name:
                valid = ", ".join(sorted(by_name)) or "none"
                raise BadInput(f"{key}: {self.name} has no parameter {key!r} (valid: {valid})", param="overrides")
            values[key] = by_name[key].parse(str(raw), self.name) if isinstance(raw, str) else raw
        return values

    def build(self, params: Mapping[str, Any]) -> WorkloadInstance:
        """Build under the caller's ``torch.device`` context (meta for analysis, the target device to run)."""
        return self.factory(params)

    def task_samples(self, task: str, params: Mapping[str, Any]) -> tuple[float, str] | None:
        """Samples the real task processes, and a description; None when no source gives it."""
        f = self.facts
        if self.tiny:
            return None  # a tiny variant's throughput says nothing about the real task's time
        if task == "train":
            if f.epochs is None:
                return None
            if f.train_samples is not None:
                return (
                    f.epochs * f.train_samples,
                    f"{f.epochs:g} epoch{'' if f.epochs == 1 else 's'} of {f.dataset} "
                    f"({f.train_samples:,} {self.sample_unit}s)",
                )
            if f.train_tokens is not None and "seq_len" in params:
                n = f.train_tokens / int(params["seq_len"])
                times = "" if f.epochs == 1 else f"{f.epochs:g} epochs of "
                return (
                    f.epochs * n,
                    f"{times}{f.dataset} ({_tokens(f.train_tokens)} tokens = {n:,.0f} sequences of "
                    f"{params['seq_len']})",
                )
            return None
        if task == "infer" and f.eval_samples is not None:
            name = f.eval_dataset or f.dataset
            return float(f.eval_samples), f"one pass over {name} ({f.eval_samples:,} {self.sample_unit}s)"
        return None


def _tokens(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:,.0f}"


DECODE_BATCH = 1
"""Decode's default batch: one sequence generating, the single-stream figure published decode speeds give."""


def task_unsupported_reason(spec: WorkloadSpec, task: str) -> str | None:
    """Why ``spec`` cannot run ``task`` (naming the workloads that can), or None when it can."""
    if spec.supports(task):
        return None
    from .registry import supporting  # the registry imports this module: import it when needed

    return f"{spec.name} does not support --task {task} (workloads that do: {supporting(task)})"


def check_task(spec: WorkloadSpec, task: str) -> None:
    """A one-line ``BadInput`` when ``spec`` cannot run ``task``."""
    why = task_unsupported_reason(spec, task)
    if why:
        raise BadInput(f"{task}: {why}", param="task")
