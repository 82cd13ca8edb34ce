"""Static analysis of workloads on the meta device and on fake tensors: what they need before anything runs.

Importing the package imports no torch: ``profiles`` (the profile cache, the ``ProfileSource`` that ``predict``
is handed) reads cached profiles without it; ``trace`` and ``memory_model`` need torch and are imported when
a profile is traced or a memory floor counted."""

from __future__ import annotations

from typing import Any

_LAZY = {"MemoryFloor": "memory_model", "activation_bytes": "memory_model", "kv_cache_bytes": "memory_model",
         "memory_floor": "memory_model"}

__all__ = ["MemoryFloor", "activation_bytes", "kv_cache_bytes", "memory_floor"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
