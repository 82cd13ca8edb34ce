"""dlgpu.bench end to end on real tiny workloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dlgpu
from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.errors import BadInput
from dlgpu.measure.suite import project
from dlgpu.results import BenchResult
from dlgpu.workloads.registry import DEFAULT_SUITE, get_workload


def run(**kw: Any) -> dlgpu.BenchReport:
    """A bench of the tiny ResNet on this CPU: the tests below count and read its results, which a GPU on the
    machine would double (``bench`` measures every device by default)."""
    kw.setdefault("workloads", ["test_resnet"])
    kw.setdefault("devices", ["cpu"])
    kw.setdefault("timing", TINY_BUDGET)
    return dlgpu.bench(**kw)


def test_cpu_suite_measures_supported_and_lists_unsupported_as_skipped() -> None:
    rep = run(devices=["cpu"])
    by = {(r.task, r.precision): r for r in rep.results}
    assert set(by) == {(t, p) for t in ("train", "infer") for p in ("fp32", "tf32", "bf16", "fp16")}
    for t in ("train", "infer"):
        assert by[(t, "fp32")].status == "ok" and by[(t, "bf16")].status == "ok"
        assert by[(t, "fp16")].status == "skipped" and "bf16" in (by[(t, "fp16")].reason or "")
        assert by[(t, "tf32")].status == "skipped" and by[(t, "tf32")].reason
        assert by[(t, "fp32")].speedup_vs_cpu_fp32 == pytest.approx(1.0)
        bf = by[(t, "bf16")]
        assert bf.speedup_vs_cpu_fp32 == pytest.approx(bf.samples_per_s / by[(t, "fp32")].samples_per_s)
    # Results come in precision order within each (workload, task, device).
    assert [r.precision for r in rep.results[:4]] == ["fp32", "tf32", "bf16", "fp16"]
    assert rep.config.batch_size is None and rep.results[0].batch_size == 4  # the workload's default
    assert not rep.interrupted


def test_overrides_and_batch_size_are_applied_and_recorded() -> None:
    rep = run(precisions=["fp32"], tasks=["infer"], batch_size=2, overrides={"image_size": "16"})
    (r,) = rep.results
    assert r.status == "ok" and r.batch_size == 2
    assert r.overrides == {"image_size": "16"}
    assert r.settings["params"]["image_size"] == 16
    assert r.settings["threads"] >= 1


def test_projection_uses_the_real_task_facts() -> None:
    spec = get_workload("resnet50")
    samples, desc = spec.task_samples("train", spec.resolve({}))
    assert samples == 90 * 1_281_167 and "90 epochs" in desc
    r = BenchResult(workload="resnet50", task="train", device="cpu", precision="fp32", batch_size=10,
                    overrides={}, status="ok", step_time=dlgpu.StepStats((2.0, 2.0, 2.0)))
    projected = project(r, spec, spec.resolve({}))
    assert projected.projection is not None
    assert projected.projection.time_s == pytest.approx(90 * 1_281_167 / 5.0)


def test_tiny_variants_make_no_real_task_claim() -> None:
    rep = run(precisions=["fp32"], tasks=["train"])
    assert rep.results[0].projection is None


def test_workload_too_big_for_memory_is_skipped_with_need_and_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    import dlgpu.devices as devices

    monkeypatch.setattr(devices, "available_memory", lambda d: 10 * 2**20)  # 10 MiB free
    rep = run(precisions=["fp32"], workloads=["resnet50"], quick=True)
    for r in rep.results:
        assert r.status == "skipped"
        assert "needs about" in (r.reason or "") and "10.00 MiB free" in (r.reason or "")
    train = next(r for r in rep.results if r.task == "train")
    assert "gradients and sgd-momentum state" in (train.reason or "")


def test_ctrl_c_keeps_what_was_measured(tmp_path: Path) -> None:
    class StopAfterFirst:
        def __init__(self) -> None:
            self.seen: list[BenchResult] = []

        def planned(self, total: int) -> None:
            pass

        def started(self, label: str) -> None:
            if any(r.status == "ok" for r in self.seen):
                raise KeyboardInterrupt

        def finished(self, result: BenchResult) -> None:
            self.seen.append(result)

    out = tmp_path / "run.json"
    rep = run(precisions=["fp32"], observer=StopAfterFirst(), save_to=out)
    assert rep.interrupted
    assert [r.status for r in rep.results] == ["ok"]
    saved = json.loads(out.read_text())
    assert saved["interrupted"] is True and len(saved["results"]) == 1
    assert saved["results"][0]["samples_per_s"] == rep.results[0].samples_per_s


def test_the_saved_document_is_complete_after_a_normal_run(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rep = run(precisions=["fp32"], save_to=out)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep.to_dict()))
    assert saved["interrupted"] is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(workloads=["resnet5O"]), "unknown workload 'resnet5O'.*resnet50"),
        (dict(precisions=["fp8"]), "precisions fp8: not one of fp32, tf32, bf16, fp16, all"),
        (dict(tasks=["fit"]), "tasks fit"),
        (dict(devices=["tpu"]), "devices tpu"),
        (dict(batch_size=0), "batch_size 0: must be a positive integer"),
        (dict(overrides={"seq_len": "32"}), "--set seq_len: a fine-tuning setting, for --task finetune"),
        (dict(overrides={"image_size": "big"}), "image_size must be int"),
        (dict(overrides={"image_size": "2"}), "at least 8"),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(kwargs: dict, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        run(**kwargs)


def test_parse_overrides() -> None:
    assert api.parse_overrides(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(BadInput, match="expected key=value"):
        api.parse_overrides(["novalue"])


def test_default_suite_and_all() -> None:
    assert [s.name for s in api.resolve_workloads(None)] == list(DEFAULT_SUITE)
    everything = api.resolve_workloads(["all"])
    assert not any(s.tiny for s in everything)
    assert {s.name for s in everything} == {
        "resnet50", "resnet152", "vgg16", "inception_v3", "efficientnet_b0", "ssd300", "maskrcnn",
        "bert_base", "bert_large", "gpt2_large", "gpt3_xl", "opt_1_3b", "llama3_8b", "lstm_lm", "gnmt", "dcgan",
        # the LLM inference workloads (family llm)
        "llama-3.2-1b", "llama-3.2-3b", "llama-3-8b", "llama-3.1-8b", "mistral-7b-v0.1", "mistral-7b-v0.3",
        "qwen2.5-7b", "qwen3-0.6b", "qwen3-4b", "qwen3-8b",
        # trees and classical ML (family tabular)
        "xgboost", "lightgbm", "random_forest", "logistic_regression", "knn", "svm", "kmeans"}
