"""Choosing workloads by name and shaping them with ``--set``: what the bench, analyze, predict and advise
inputs share. Torch-free (the registry is)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dlgpu.errors import BadInput

from .registry import DEFAULT_SUITE, WorkloadSpec, get_workload, list_workloads


def resolve_workloads(names: Sequence[str] | None) -> list[WorkloadSpec]:
    if not names:
        return [get_workload(n) for n in DEFAULT_SUITE]
    if "all" in names:
        return list_workloads(include_tiny=False)
    out: list[WorkloadSpec] = []
    for n in names:
        spec = get_workload(n)
        if spec not in out:
            out.append(spec)
    return out


def resolve_choice(values: Sequence[str] | None, valid: Sequence[str], param: str,
                   default: Sequence[str]) -> tuple[str, ...]:
    """The values asked for, in ``valid``'s order (``all``: every one; none: ``default``)."""
    if not values:
        return tuple(default)
    if "all" in values:
        return tuple(valid)
    for v in values:
        if v not in valid:
            raise BadInput(f"{v}: not one of {', '.join((*valid, 'all'))}", param=param)
    return tuple(v for v in valid if v in values)


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadInput(f"{pair}: expected key=value, e.g. image_size=64", param="overrides")
        out[key.strip()] = value.strip()
    return out


def overrides_for(specs: list[WorkloadSpec], overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Apply each ``--set`` key to the workloads that have it; a key no selected workload has is an error."""
    per: dict[str, dict[str, str]] = {s.name: {} for s in specs}
    for key, value in overrides.items():
        takers = [s for s in specs if any(p.name == key for p in s.params)]
        if not takers:
            valid = sorted({p.name for s in specs for p in s.params})
            raise BadInput(f"{key}: no selected workload has a parameter {key!r} (valid: {', '.join(valid) or 'none'})",
                           param="overrides")
        for s in takers:
            per[s.name][key] = value
    return per


def find_workloads(pattern: str = "*", include_tiny: bool = False) -> list[WorkloadSpec]:
    found = list_workloads(pattern, include_tiny=include_tiny)
    if not found:
        names = ", ".join(s.name for s in list_workloads(include_tiny=include_tiny))
        raise BadInput(f"no workload matches {pattern!r} (valid: {names})")
    return found


def workload_summary(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family,
        "description": spec.description,
        "batch_size": spec.batch_size,
        "quick_batch_size": spec.quick_batch_size,
        "sample_unit": spec.sample_unit,
        "optimizer": spec.optimizer,
        "channels_last": spec.channels_last,
        "tiny": spec.tiny,
        "architecture_source": spec.architecture_source,
        "params": [{"name": p.name, "default": p.default, "type": p.type_name, "help": p.help,
                    "choices": None if p.choices is None else list(p.choices)} for p in spec.params],
        "facts": spec.facts.to_dict(),
    }
