"""``predict.rescale``: a profile moved to a smaller batch without tracing again stays close to a real trace."""

from __future__ import annotations

import pytest

from dlgpu import api
from dlgpu.predict.rescale import rescale
from dlgpu.results import memory_need


@pytest.mark.parametrize(("workload", "precision", "traced", "smaller"),
                         [("resnet50", "bf16", 256, 128), ("bert_base", "fp16", 32, 8)])
def test_rescaled_profile_matches_a_real_trace(workload: str, precision: str, traced: int, smaller: int) -> None:
    full = api.analyze(workload, "train", precision, traced)
    real = api.analyze(workload, "train", precision, smaller)
    derived = rescale(full, smaller)
    assert derived.batch_size == smaller and derived.state_bytes == full.state_bytes
    assert derived.flops == pytest.approx(real.flops, rel=1e-3)  # FLOPs are linear in the batch
    assert derived.bytes == pytest.approx(real.bytes, rel=0.10)  # weight reads do not shrink with it
    assert memory_need(derived) == pytest.approx(memory_need(real), rel=0.05)
    opt = [o for o in derived.ops if o.phase == "optimizer"]
    assert opt and opt == [o for o in full.ops if o.phase == "optimizer"]  # parameters only: unchanged
    assert rescale(full, traced) is full
