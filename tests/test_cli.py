"""The command line: one JSON document on stdout with --json, one line and exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlgpu.cli.main import main

REQUIRED = {"workload", "task", "device", "precision", "batch_size", "overrides", "status", "reason",
            "samples_per_s", "step_time_s", "peak_mem_bytes", "speedup_vs_cpu_fp32", "task_time_s", "noisy"}


def test_bench_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "-w", "test_resnet", "-d", "cpu", "--quick", "--budget", "0.05", "-p", "fp32", "fp16",
                 "--no-save", "--json", "--set", "image_size=16"])
    out, err = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)  # exactly one JSON document, nothing else on stdout
    assert doc["schema"] == "dlgpu.bench/1"
    assert doc["machine"]["devices"][0]["id"] == "cpu" and doc["machine"]["torch"]
    assert len(doc["results"]) == 4 and {r["device"] for r in doc["results"]} == {"cpu"}
    for r in doc["results"]:
        assert set(r) >= REQUIRED
        assert r["overrides"] == {"image_size": "16"}
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert len(ok) == 2
    for r in ok:
        st = r["step_time_s"]
        assert st["n"] == len(st["samples"]) >= 3 and st["median"] > 0 and st["iqr"] >= 0
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] / st["median"])
        assert isinstance(r["noisy"], bool)
    skipped = [r for r in doc["results"] if r["status"] == "skipped"]
    assert all(r["reason"] and r["samples_per_s"] is None for r in skipped)
    assert "dlgpu bench" in err  # the human table went to stderr


def test_bench_saves_the_run(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.json"
    assert main(["bench", "-w", "test_resnet", "-d", "cpu", "-t", "infer", "-p", "fp32", "--budget", "0.05",
                 "--quick", "-o", str(out)]) == 0
    (r,) = json.loads(out.read_text())["results"]
    assert r["status"] == "ok" and r["device"] == "cpu"
    assert "written:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "-w", "nosuch"], "unknown workload 'nosuch'"),
        (["bench", "-d", "cuda:99"], "--device cuda:99: not present on this machine (present: cpu"),
        (["bench", "-p", "int4"], "--precision int4: not one of"),
        (["bench", "-w", "test_resnet", "--set", "colour=red"], "no selected workload has a parameter 'colour'"),
        (["bench", "-b", "0"], "--batch-size 0: must be a positive integer"),
        (["bench", "-b", "two"], "argument --batch-size/-b: invalid int value: 'two'"),
        (["bench", "--model", "nosuchpkg.mod:make", "--input", "3x8x8"], "cannot import 'nosuchpkg.mod'"),
        (["bench", "--model", "json:dumps"], "--model and --input go together"),
        (["workloads", "show", "vgg17"], "unknown workload 'vgg17'"),
        (["bench", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_input_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_workloads_list_and_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.workloads/1"
    names = {w["name"] for w in doc["workloads"]}
    assert {"resnet50", "inception_v3", "ssd300", "bert_base", "lstm_lm", "dcgan"} <= names
    assert not any(n.startswith("test_") for n in names)
    assert main(["workloads", "show", "resnet50", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["schema"] == "dlgpu.workload/1" and one["parameters"] == 25_557_032
    assert one["facts"]["train_samples"] == 1_281_167 and one["facts"]["source"]
    assert {p["name"] for p in one["params"]} >= {"image_size"}


def test_human_workloads_show_lists_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads", "show", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "image_size" in out and "25,557,032" in out and "ImageNet" in out


def test_python_dash_m_entry_point() -> None:
    p = subprocess.run([sys.executable, "-m", "dlgpu", "--version"], capture_output=True, text=True, check=True)
    assert p.stdout.startswith("dlgpu ")


def test_ctrl_c_prints_and_saves_what_was_measured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real `dlgpu bench` process, a real SIGINT in the middle of the suite."""
    import signal
    import time

    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlgpu", "bench", "-w", "test_resnet", "-d", "cpu", "-p", "fp32", "bf16", "--budget",
         "3", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the first finished result to be saved
        if out.exists() and json.loads(out.read_text())["results"]:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    saved = json.loads(out.read_text())
    assert saved["interrupted"] is True
    done = [r for r in saved["results"] if r["status"] == "ok"]
    assert done and len(saved["results"]) < 4  # stopped before the end, kept what it finished
    assert "Interrupted" in stdout and "test_resnet" in stdout
