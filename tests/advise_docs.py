"""Real ``dlgpu.advise/1`` documents for the tests, made once per test process by ``api.advise`` over the whole
catalog, in a fresh DLGPU_HOME and results store: nothing is stored for this machine, so its CPU is predicted,
and the operator profiles are traced (about 15 s the first time, for resnet50 and dcgan)."""

from __future__ import annotations

import copy
import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dlgpu import api
from dlgpu.advise.inputs import Limits


@functools.cache
def _made() -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="dlgpu-advise-tests-") as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLGPU_HOME", str(Path(tmp) / "home"))
        mp.setenv("DLGPU_CONFIG_DIR", str(Path(tmp) / "config"))
        mp.delenv("DLGPU_DB", raising=False)
        mp.delenv("DLGPU_CACHE_DIR", raising=False)
        db = Path(tmp) / "advise.sqlite"
        return {
            # the two examples: a small GAN a CPU can train overnight, an ImageNet run it cannot
            "dcgan": api.advise("dcgan", limits=Limits(deadline_s=12 * 3600, deadline_basis="--deadline 12h"),
                                db=db).to_dict(),
            "resnet50": api.advise("resnet50", db=db).to_dict(),
            # and a deadline nothing meets, so that the verdict says what would change it
            "dcgan-1s": api.advise("dcgan", limits=Limits(deadline_s=1, deadline_basis="--deadline 1s"),
                                   db=db).to_dict(),
            # and a power limit that excludes the larger GPUs
            "resnet50-300w": api.advise("resnet50", limits=Limits(max_power_w=300), db=db).to_dict(),
        }


def real_doc(name: str) -> dict[str, Any]:
    """A fresh copy of one of the documents: 'dcgan' (12 h deadline), 'resnet50' (the default 24 h) or
    'dcgan-1s' (a 1 s deadline: nothing meets it) or 'resnet50-300w' (devices over 300 W excluded)."""
    return copy.deepcopy(_made()[name])
