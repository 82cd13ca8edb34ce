"""`dlgpu hardware list|show`: one JSON document with --json, tables otherwise, one line and exit 2 on
bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main


@pytest.fixture(autouse=True)
def _no_real_user_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLGPU_CONFIG_DIR", str(tmp_path / "config"))


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    assert main(argv) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)  # exactly one JSON document
    assert isinstance(doc, dict)
    return doc


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    cat = load_catalog()
    doc = run_json(["hardware", "list", "--json"], capsys)
    assert doc["schema"] == "dlgpu.hardware/1" and doc["kind"] == "all" and doc["user_files"] == []
    assert len(doc["gpus"]) == len(cat.gpus) and len(doc["cpus"]) == len(cat.cpus)
    assert len(doc["cloud"]) == len(cat.cloud)
    a100 = next(g for g in doc["gpus"] if g["id"] == "a100-sxm4-80gb")
    assert a100["memory_bandwidth_bytes_per_s"] == pytest.approx(2.039e12)
    assert a100["cuda_cc"] == [8, 0] and a100["source"]
    assert {"fp32_flops_per_s", "bf16_flops_per_s", "memory_bytes", "tdp_w"} <= set(a100)


def test_list_one_kind(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["hardware", "list", "--kind", "cloud", "--json"], capsys)
    assert "cloud" in doc and "gpus" not in doc and "cpus" not in doc
    assert all(c["price_usd_per_hour"] > 0 and c["price_date"] for c in doc["cloud"])


def test_show_gpu_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["hardware", "show", "a100-sxm4-80gb", "--json"], capsys)
    assert doc["schema"] == "dlgpu.hardware.entry/1" and doc["type"] == "gpu" and doc["estimated"] is False
    assert doc["entry"]["memory_bandwidth_bytes_per_s"] == pytest.approx(2.039e12)
    assert any(c["provider"] == "CoreWeave" for c in doc["cloud_instances"])


def test_show_cpu_and_local_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(["hardware", "show", "epyc-7763", "--json"], capsys)
    assert doc["type"] == "cpu" and doc["entry"]["cores"] == 64 and "cloud_instances" not in doc
    local = run_json(["hardware", "show", "local", "--json"], capsys)
    assert local["type"] == "local" and local["local"]["model_name"]
    if local["estimated"]:
        assert local["local"]["matched_id"] is None and local["entry"]["basis"]
    else:
        assert local["local"]["matched_id"] == local["entry"]["id"]


def test_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm5-80gb" in out and "epyc-7763" in out and "p5.48xlarge" in out
    assert main(["hardware", "show", "h100-sxm5-80gb"]) == 0
    out = capsys.readouterr().out
    assert "3,350 GB/s" in out and "source: https://" in out and "p5.48xlarge" in out
    assert main(["hardware", "show", "local"]) == 0
    assert "This machine's CPU" in capsys.readouterr().out


def test_catalog_file_adds_an_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("id,name,vendor,memory_gb,fp32_tflops,source_url\nmy-gpu,My GPU,Acme,12,10,https://example.org\n")
    doc = run_json(["hardware", "list", "--kind", "gpu", "--catalog", str(f), "--json"], capsys)
    assert doc["user_files"] == [str(f)]
    mine = next(g for g in doc["gpus"] if g["id"] == "my-gpu")
    assert mine["origin"] == str(f) and mine["memory_bandwidth_bytes_per_s"] is None
    one = run_json(["hardware", "show", "my-gpu", "--catalog", str(f), "--json"], capsys)
    assert one["entry"]["fp32_flops_per_s"] == pytest.approx(10e12)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["hardware", "show", "a100"], "unknown hardware 'a100' (did you mean a100-"),
        (["hardware", "show", "a100", "--json"], "unknown hardware 'a100'"),
        (["hardware", "list", "--kind", "tpu"], "argument --kind: invalid choice: 'tpu'"),
        (["hardware", "list", "--catalog", "/nonexistent/x.csv"], "/nonexistent/x.csv: no such catalog file"),
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


def test_malformed_catalog_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "my.csv"
    f.write_text("id,name,vendor,memory_gb,memory_bandwidth_gbs,fp32_tflops,source_url\n"
                 "ok,Fine,Acme,8,400,10,https://x\nbad,Bad,Acme,8,fast,10,https://x\n")
    assert main(["hardware", "show", "t4", "--catalog", str(f), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == f"dlgpu: error: {f} row 3, field memory_bandwidth_gbs: 'fast' is not a number"
