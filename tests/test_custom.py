"""A user's own model through --model and --input."""

from __future__ import annotations

import json

import pytest
import torch

from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.workloads import PlainContext
from dlgpu.workloads.custom import custom_spec, parse_inputs


def test_input_spec_parsing() -> None:
    a, b = parse_inputs("3x224x224, 128:int64:30522")
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32
    assert b.shape == (128,) and b.dtype == torch.int64 and b.high == 30522
    x = b.make(2, torch.device("cpu"))
    assert x.shape == (2, 128) and int(x.max()) < 30522


@pytest.mark.parametrize(("text", "match"), [
    ("3xAx4", "must be integers"), ("0x3", "positive"), ("8:float64", "not one of"), ("8:int64:z", "HIGH"),
    ("", "SHAPE"),
])
def test_bad_input_specs(text: str, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        parse_inputs(text)


def test_custom_model_trains_for_real() -> None:
    spec = custom_spec("custom_models:TokenModel", "6:int64:100,6:int64:2")
    w = spec.build({})
    before = [p.detach().clone() for p in w.parameters()]
    w.train_step(w.make_batch(3, torch.device("cpu")), PlainContext())
    assert any(not torch.equal(a, b) for a, b in zip(before, w.parameters(), strict=True))


def test_bench_custom_model_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--model", "custom_models:tiny_mlp", "--input", "16", "-b", "4", "-p", "fp32", "-d", "cpu",
                 "--quick", "--budget", "0.05", "--no-save", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["workload"], r["task"], r["device"]) for r in doc["results"]] == [
        ("custom:custom_models:tiny_mlp", "train", "cpu"), ("custom:custom_models:tiny_mlp", "infer", "cpu")]
    assert all(r["status"] == "ok" and r["batch_size"] == 4 for r in doc["results"])


def test_factory_must_return_a_module(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--model", "custom_models:not_a_module", "--input", "4", "-d", "cpu", "--no-save"])
    assert code == 0  # the suite goes on: the workload is reported as failed
    out = capsys.readouterr().out
    assert "failed" in out and "not an nn.Module" in out


def test_missing_factory_is_bad_input() -> None:
    with pytest.raises(BadInput, match="has no callable 'nope'"):
        custom_spec("custom_models:nope", "4")
