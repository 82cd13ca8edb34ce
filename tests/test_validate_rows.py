"""``dlgpu validate``: every row gets its own status. Rows that can be predicted are, with their errors; a row
whose hardware cannot be predicted (an unknown id, a user catalog GPU without memory bandwidth), whose
precision the hardware lacks, or whose cells are bad is kept with its status and one-line reason, and left
out of the error statistics. Only an unreadable file or wrong columns is a bad input (exit 2)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from dlgpu import api
from dlgpu.analyze.profiles import profile
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.predict import predict_step
from dlgpu.predict.calibration import load_calibration

HEADER = "workload,task,hardware,precision,batch_size,overrides,samples_per_s,framework,source_url\n"
SRC = "https://example.com/measured"
ROWS = [  # (hardware, precision, batch_size, measured samples/s); resnet50 inference, PyTorch
    ("t4", "fp16", "64", 1000.0),  # row 2: ok
    ("no-such-gpu", "fp16", "64", 1000.0),  # row 3: unknown hardware id
    ("nobw-gpu", "fp32", "64", 500.0),  # row 4: user GPU without memory bandwidth
    ("withbw-gpu", "fp32", "64", 500.0),  # row 5: the same GPU with its bandwidth: ok
    ("a100-sxm4-80gb", "fp16", "64", 5000.0),  # row 6: ok
    ("v100-sxm2-16gb", "bf16", "64", 900.0),  # row 7: a precision the V100 lacks: unsupported
    ("t4", "fp16", "abc", 1000.0),  # row 8: a bad cell
]
GOOD = {2: ("t4", "fp16"), 5: ("withbw-gpu", "fp32"), 6: ("a100-sxm4-80gb", "fp16")}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cat = tmp_path / "my_gpus.csv"
    cat.write_text("id,name,vendor,memory_gb,memory_bandwidth_gbs,fp32_tflops,source_url\n"
                   f"nobw-gpu,No Bandwidth GPU,Acme,16,,20,{SRC}\n"
                   f"withbw-gpu,With Bandwidth GPU,Acme,16,900,20,{SRC}\n")
    f = tmp_path / "measured.csv"
    f.write_text(HEADER + "".join(f"resnet50,infer,{hw},{prec},{bs},,{sps:g},pytorch,{SRC}\n"
                                  for hw, prec, bs, sps in ROWS))
    return f, cat


def expected(cat: Path) -> dict[int, tuple[float, float]]:
    """row -> (predicted samples/s, error %), each good row predicted on its own: its profile, its catalog
    GPU, the shipped calibration."""
    catalog, cal = load_catalog([cat]), load_calibration()
    out = {}
    for row, (hw, prec) in GOOD.items():
        pred = predict_step(profile("resnet50", "infer", prec, 64, {}), catalog.gpu(hw), prec, cal)
        sps = 64 / pred.step_time_s
        measured = ROWS[row - 2][3]
        out[row] = (sps, 100 * (sps - measured) / measured)
    return out


def check(doc: dict[str, Any], f: Path, cat: Path) -> None:
    assert doc["schema"] == "dlgpu.validate/1" and doc["file"] == str(f)
    rows = {r["row"]: r for r in doc["rows"]}
    assert sorted(rows) == list(range(2, 2 + len(ROWS)))  # every row kept, numbered as in a spreadsheet
    want = expected(cat)
    for n, (sps, err) in want.items():
        r = rows[n]
        assert (r["status"], r["reason"]) == ("ok", None)
        assert r["hardware"] == GOOD[n][0]
        assert r["predicted_samples_per_s"] == pytest.approx(sps, rel=1e-9)
        assert r["error_pct"] == pytest.approx(err, rel=1e-9)
    assert len({round(rows[n]["predicted_samples_per_s"]) for n in want}) == 3  # three different answers

    def left(n: int, status: str, *needles: str) -> None:
        r = rows[n]
        assert r["status"] == status and r["predicted_samples_per_s"] is None and r["error_pct"] is None
        assert "\n" not in r["reason"]
        for needle in needles:
            assert needle in r["reason"]

    left(3, "error", "unknown hardware 'no-such-gpu'")
    left(4, "error", "nobw-gpu", "no memory bandwidth")
    left(7, "unsupported", "bf16 needs compute capability 8.0")
    left(8, "error", "batch_size 'abc'", "not a positive whole number")

    # the statistics are over the good rows only; the rows left out are counted and grouped by reason
    errs = [abs(e) for _, e in want.values()]
    assert doc["median_abs_error_pct"] == pytest.approx(statistics.median(errs))
    assert doc["mean_abs_error_pct"] == pytest.approx(statistics.fmean(errs))
    assert (doc["predicted"], doc["left_out"], doc["errors"], doc["unsupported"]) == (3, 4, 3, 1)
    by = {tuple(g["rows"]): (g["status"], g["reason"]) for g in doc["left_out_by_reason"]}
    assert by == {(n,): (rows[n]["status"], rows[n]["reason"]) for n in (3, 4, 7, 8)}


def test_api_gives_every_row_its_status(files: tuple[Path, Path]) -> None:
    f, cat = files
    check(api.validate(f, [cat]), f, cat)


def test_cli_json_and_table_show_every_row(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    f, cat = files
    assert main(["validate", str(f), "--catalog", str(cat), "--json"]) == 0
    out = capsys.readouterr().out
    check(json.loads(out), f, cat)

    assert main(["validate", str(f), "--catalog", str(cat)]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    table = {line.split("│")[1].strip(): line for line in lines if line.startswith("│")}
    assert sorted(table, key=int) == [str(n) for n in range(2, 2 + len(ROWS))]
    for n in GOOD:
        assert table[str(n)].rstrip(" │").endswith("ok")
    for n, status in ((3, "error"), (4, "error"), (7, "unsupported"), (8, "error")):
        assert table[str(n)].rstrip(" │").endswith(status)
    assert "left out of the errors: 4 row(s)" in out
    assert "  row 3 (error): unknown hardware 'no-such-gpu'" in out
    assert "  row 4 (error): nobw-gpu: the catalog has no memory bandwidth" in out
    assert "  row 7 (unsupported): bf16 needs compute capability 8.0" in out
    assert "over 3 rows; 4 left out" in out


def test_only_the_file_itself_is_a_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_col = tmp_path / "cols.csv"
    missing_col.write_text("workload,task,hardware,precision,batch_size\nresnet50,infer,t4,fp16,64\n")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 50)
    for path, needle in ((missing_col, "missing columns samples_per_s"), (tmp_path / "nope.csv", "cannot read"),
                         (binary, "cannot read")):
        with pytest.raises(BadInput, match=needle):
            api.validate(path)
        assert main(["validate", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and needle in err


def test_a_file_of_only_bad_rows_is_no_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(HEADER + f"resnet50,infer,no-such-gpu,fp16,64,,1000,pytorch,{SRC}\n"
                 f"resnet50,infer,t4,fp16,64,,-5,pytorch,{SRC}\n")
    assert main(["validate", str(f), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["row"], r["status"]) for r in doc["rows"]] == [(2, "error"), (3, "error")]
    assert "samples_per_s '-5': not a positive number" in doc["rows"][1]["reason"]
    assert doc["predicted"] == 0 and doc["median_abs_error_pct"] is None and doc["left_out"] == 2
    assert main(["validate", str(f)]) == 0
    assert "no row predicted; 2 left out" in capsys.readouterr().out
