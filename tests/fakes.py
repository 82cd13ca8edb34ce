"""Fakes for seams that cannot exist on this machine (a GPU's properties)."""

from __future__ import annotations

import types


def fake_cuda_torch(props: list[dict], hip: str | None = None) -> types.SimpleNamespace:
    """A stand-in for the ``torch`` module whose ``cuda`` reports the given device properties."""
    devs = [types.SimpleNamespace(**p) for p in props]
    cuda = types.SimpleNamespace(
        is_available=lambda: bool(devs),
        device_count=lambda: len(devs),
        get_device_properties=lambda i: devs[i],
    )
    return types.SimpleNamespace(
        cuda=cuda,
        version=types.SimpleNamespace(hip=hip, cuda=None if hip else "12.4"),
        backends=types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: False)),
        xpu=types.SimpleNamespace(is_available=lambda: False),
    )
