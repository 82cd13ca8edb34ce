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




def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a real CUDA GPU (skipped, with the reason, where none is present)")


def _no_cuda_reason() -> str | None:
    """Why the ``gpu`` tests cannot run here, or None where a CUDA device is present."""
    if torch.cuda.is_available():
        return None
    build = "a CPU-only build" if torch.version.cuda is None else f"built with CUDA {torch.version.cuda}"
    return f"needs a CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, {build})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = _no_cuda_reason()
    if why is None:
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason=why))
