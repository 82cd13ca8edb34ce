"""``dlgpu bench --runtime llama.cpp`` (``dlgpu.measure.llamacpp_bench``): bad input in one line, the skip when the
``dlgpu[llamacpp]`` extra is missing, Ctrl-C and failures keeping what was measured (through seams: these run
without llama.cpp), and a real run of the tiny ``test_llm`` model through llama.cpp, stored and read back (skipped
where llama-cpp-python is not installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.measure import llamacpp, llamacpp_bench
from dlgpu.measure.suite import plan_suite
from dlgpu.results import BenchResult, StepStats, report_from_dict
from dlgpu.store import Store
from dlgpu.store.schema import validate_document

LLAMA = ["bench", "--runtime", "llama.cpp"]


def _plan(**kw: Any) -> Any:
    args: dict[str, Any] = {"workloads": ["test_llm"], "devices": None, "precisions": None, "tasks": None,
                            "quick": True, "batch_size": None, "overrides": {}, "timing": None, "custom_specs": (),
                            "include_hostname": False, "telemetry": False, "telemetry_period_s": 0.1,
                            "runtime": "llama.cpp"}
    return plan_suite(**{**args, **kw})


# --- bad input: one line, exit 2 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([*LLAMA, "-w", "test_resnet"], "--workload test_resnet: llama.cpp measures LLM workloads only (valid: "),
        ([*LLAMA, "-w", "test_llm", "-p", "int8"],
         "--precision int8: with --runtime llama.cpp the precision is the GGUF weight type (valid: f16, q8_0, q4_0"),
        ([*LLAMA, "-w", "test_llm", "-d", "cuda"], "--device cuda: llama.cpp is measured on the CPU only"),
        ([*LLAMA, "-w", "test_llm", "-b", "4"], "--batch-size 4: llama.cpp is measured on one sequence (batch 1"),
        ([*LLAMA, "-w", "test_llm", "-t", "train"], "--task train: llama.cpp measures inference"),
        ([*LLAMA, "-w", "test_llm", "--set", "context_len=100"], "test_llm has a context of 64 tokens"),
        ([*LLAMA], "--workload name the LLM workloads llama.cpp measures"),
        (["bench", "-w", "test_llm", "-p", "q8_0"], "--precision q8_0: a GGUF weight type, measured with --runtime"),
        (["bench", "--runtime", "vllm", "-w", "test_llm"], "--runtime vllm: not one of pytorch, llama.cpp"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


def test_the_plan_is_the_llm_tasks_on_the_cpu_at_the_gguf_types() -> None:
    suite = _plan(runtime="llamacpp", precisions=["all"])  # the alias, and -p all: every GGUF type
    assert suite.config.runtime == "llama.cpp" and suite.config.precisions == ("f16", "q8_0", "q4_0")
    assert suite.config.devices == ("cpu",) and suite.config.tasks == ("infer", "decode")
    assert [(p.task, p.device.id, p.batch_size) for p in suite.plans] == [("infer", "cpu", 16), ("decode", "cpu", 1)]
    one = _plan(precisions=["q4_0", "q8_0"], tasks=["decode"], batch_size=1, devices=["cpu"],
                overrides={"context_len": "32"})
    assert one.config.precisions == ("q8_0", "q4_0") and [p.task for p in one.plans] == ["decode"]
    assert one.plans[0].params["context_len"] == 32
    with pytest.raises(BadInput, match=r"llama\.cpp measures the catalog LLM workloads only"):
        _plan(custom_specs=[object()])


# --- the extra missing, Ctrl-C, a failing configuration: through seams ---------------------------------------


def test_without_the_extra_every_configuration_is_skipped_with_how_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(llamacpp, "available",
                        lambda: "not importable: llama_cpp (ModuleNotFoundError: No module named 'llama_cpp')")
    db = tmp_path / "runs.sqlite"
    assert main([*LLAMA, "-w", "test_llm", "--quick", "--no-telemetry", "--json", "--db", str(db)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"]
    assert [(r["task"], r["precision"]) for r in rows] == [(t, p) for t in ("infer", "decode")
                                                           for p in ("f16", "q8_0", "q4_0")]
    for r in rows:
        assert r["status"] == "skipped" and r["runtime"] == "llama.cpp" and r["samples_per_s"] is None
        assert "No module named 'llama_cpp'" in r["reason"] and "pip install 'dlgpu[llamacpp]'" in r["reason"]
    validate_document(doc, "doc")  # the store's schema takes GGUF precisions and the runtime
    with Store(db) as store:
        stored = report_from_dict(store.get(doc["run_id"]).document)
    assert {r.runtime for r in stored.results} == {"llama.cpp"} and stored.config.runtime == "llama.cpp"


def _fake_result(path: Path, plan: Any, precision: str, *args: Any, **kw: Any) -> BenchResult:
    assert path.is_file()
    return BenchResult(**llamacpp_bench._base(plan, precision), status="ok", step_time=StepStats((0.01, 0.011, 0.012)),
                       settings={"gguf": {"file": path.name}, "path": str(path)})


def _seams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "available", lambda: None)
    monkeypatch.setattr(llamacpp, "extra_buffers_work", lambda: False)
    monkeypatch.setattr(llamacpp, "write_synthetic_gguf",
                        lambda arch, path, weight_type: Path(path).write_bytes(b"GGUF fake"))


def test_ctrl_c_keeps_what_was_measured_and_the_gguf_is_deleted(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _seams(monkeypatch)
    calls: list[str] = []

    def measure(path: Path, plan: Any, precision: str, *args: Any, **kw: Any) -> BenchResult:
        calls.append(str(path))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _fake_result(path, plan, precision)

    monkeypatch.setattr(llamacpp_bench, "measure_gguf", measure)
    db = tmp_path / "runs.sqlite"
    assert main([*LLAMA, "-w", "test_llm", "-p", "q8_0", "q4_0", "--quick", "--no-telemetry", "--json",
                 "--db", str(db)]) == 130
    doc = json.loads(capsys.readouterr().out)
    assert doc["interrupted"] and [(r["task"], r["precision"], r["status"]) for r in doc["results"]] == [
        ("infer", "q8_0", "ok")]
    assert not any(Path(c).exists() for c in calls) and not Path(calls[0]).parent.exists()
    with Store(db) as store:
        run = store.get(doc["run_id"])
    assert run.row.status == "interrupted" and len(run.document["results"]) == 1


def test_a_failing_gguf_fails_its_rows_and_the_others_are_measured(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _seams(monkeypatch)

    def write(arch: Any, path: Path, weight_type: str) -> None:
        if weight_type == "q4_0":
            raise ValueError("disk full")
        Path(path).write_bytes(b"GGUF fake")

    monkeypatch.setattr(llamacpp, "write_synthetic_gguf", write)
    monkeypatch.setattr(llamacpp_bench, "measure_gguf", _fake_result)
    assert main([*LLAMA, "-w", "test_llm", "-p", "q8_0", "q4_0", "--quick", "--no-telemetry", "--json",
                 "--no-save"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["task"], r["precision"], r["status"]) for r in rows] == [
        ("infer", "q8_0", "ok"), ("infer", "q4_0", "failed"), ("decode", "q8_0", "ok"), ("decode", "q4_0", "failed")]
    assert "writing the synthetic GGUF failed: ValueError: disk full" in rows[1]["reason"]


def test_a_schema_rejects_a_gguf_type_with_the_pytorch_runtime(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _seams(monkeypatch)
    monkeypatch.setattr(llamacpp_bench, "measure_gguf", _fake_result)
    assert main([*LLAMA, "-w", "test_llm", "-p", "q8_0", "-t", "decode", "--quick", "--no-telemetry", "--json",
                 "--no-save"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate_document(doc, "doc")
    doc["results"][0]["runtime"] = "pytorch"
    with pytest.raises(BadInput, match="GGUF weight types"):
        validate_document(doc, "doc")


# --- a real run through llama.cpp ---------------------------------------------------------------------------


def test_real_run_of_the_tiny_llm_is_measured_stored_and_shown(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    monkeypatch.setattr(llamacpp, "extra_buffers_work", lambda: False)  # the plain CPU kernels: no probe child
    db = tmp_path / "runs.sqlite"
    assert main([*LLAMA, "-w", "test_llm", "-p", "q8_0", "-t", "decode", "infer", "--quick", "--json",
                 "--db", str(db)]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert "test_llm (llama.cpp)" in out.err  # the table, on stderr with --json
    assert doc["config"]["runtime"] == "llama.cpp" and doc["config"]["precisions"] == ["q8_0"]
    rows = {r["task"]: r for r in doc["results"]}
    assert set(rows) == {"infer", "decode"}
    threads = llamacpp.default_threads()
    for r in rows.values():
        assert r["status"] == "ok", r["reason"]
        assert r["runtime"] == "llama.cpp" and r["precision"] == "q8_0" and r["device"] == "cpu"
        st = r["step_time_s"]
        assert st["n"] == len(st["samples"]) >= 5 and st["median"] > 0 and r["samples_per_s"] > 0
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] / st["median"])
        assert r["warmup_steps"] >= 1 and r["stop_reason"] in ("ci", "budget", "max_steps")
        assert r["contention"] is not None and isinstance(r["contended"], bool)
        assert r["peak_mem_kind"] == "process-peak-rss-delta" and r["peak_mem_bytes"] is not None
        s = r["settings"]
        assert s["runtime"] == "llama.cpp" and s["llama_cpp_python"] and s["n_threads"] <= threads
        assert s["n_threads_available"] == threads and s["extra_buffers"] is False
        assert s["gguf"]["file_bytes"] > 0 and s["gguf"]["weight_type"] == "q8_0"
        assert s["llama_bench"].startswith("llama-bench -m ") and f"-t {s['n_threads']}" in s["llama_bench"]
        assert not Path(s["llama_bench"].split()[2]).exists()  # the GGUF was deleted
        perf = s["llama_perf"]
        assert perf["tokens_per_s"] > 0 and 0.5 < perf["tokens_per_s"] / perf["timed_tokens_per_s"] < 2
    assert rows["decode"]["batch_size"] == 1 and rows["decode"]["settings"]["llama_perf"]["n_eval"] == rows[
        "decode"]["step_time_s"]["n"]
    assert rows["infer"]["batch_size"] == 16  # one prompt of prompt_len tokens: samples/s is tokens/s
    assert rows["infer"]["settings"]["llama_perf"]["n_p_eval"] == 16 * rows["infer"]["step_time_s"]["n"]
    # the stored run reads back, and runs / show / compare / export-import take it
    with Store(db) as store:
        stored = report_from_dict(store.get(doc["run_id"]).document)
    assert [(r.task, r.precision, r.runtime, r.status) for r in stored.results] == [
        ("infer", "q8_0", "llama.cpp", "ok"), ("decode", "q8_0", "llama.cpp", "ok")]
    assert main(["runs", "--db", str(db)]) == 0
    assert main(["show", doc["run_id"][:8], "--db", str(db)]) == 0
    assert "test_llm (llama.cpp)" in capsys.readouterr().out
    assert main(["compare", "--db", str(db), "--json"]) == 0
    capsys.readouterr()
    bundle = tmp_path / "export.json"
    assert main(["export", doc["run_id"], "--db", str(db), "-o", str(bundle)]) == 0
    assert main(["import", str(bundle), "--db", str(tmp_path / "other.sqlite")]) == 0
