"""Shared fixtures. Fakes live only at seams that cannot exist here (a GPU's properties, NVML, sysfs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlgpu.measure.timer import Budget

TINY_BUDGET = Budget(warmup_steps=1, min_steps=2, max_steps=3, budget_s=0.05)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the developer's real runs folder, nor read their user catalog."""
    monkeypatch.setenv("DLGPU_HOME", str(tmp_path / "dlgpu-home"))
    monkeypatch.setenv("DLGPU_CONFIG_DIR", str(tmp_path / "dlgpu-config"))
    monkeypatch.delenv("DLGPU_DB", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


