"""The hardware catalog: the builtin data files parse into SI units, user files add and override by id,
malformed files fail in one line naming file, row and field, and this machine's CPU is matched or
estimated with its basis."""

from __future__ import annotations

import csv
import math
from dataclasses import fields
from pathlib import Path

import pytest

from dlgpu.catalog import (
    Catalog,
    CatalogError,
    CloudInstance,
    CpuSpec,
    GpuSpec,
    LocalCpu,
    describe_local_cpu,
    load_catalog,
    normalize_cpu_name,
    this_cpu,
    user_catalog_dir,
)
from dlgpu.catalog.specs import is_consumer
from dlgpu.errors import BadInput

DATA = Path(__file__).resolve().parents[1] / "src" / "dlgpu" / "catalog" / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GIB = 2**30


@pytest.fixture(autouse=True)
def _no_real_user_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read the developer's own ~/.config/dlgpu/catalog."""
    monkeypatch.setenv("DLGPU_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config" / "catalog"


def rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float | None:
    return float(text) if text.strip() else None


def builtin() -> Catalog:
    return load_catalog(include_user_dir=False)


# --- the builtin data ----------------------------------------------------------------------------------

def test_every_builtin_row_parses_and_every_figure_present_is_positive() -> None:
    cat = builtin()
    assert len(cat.gpus) == len(rows("gpus.csv"))
    assert len(cat.cpus) == len(rows("cpus.csv"))
    assert len(cat.cloud) == len(rows("cloud.csv"))
    for spec in (*cat.gpus, *cat.cpus, *cat.cloud):
        assert spec.source.startswith("http"), spec
        assert spec.origin == "builtin"
        for f in fields(spec):
            value = getattr(spec, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert value > 0 and math.isfinite(value), (spec, f.name)


@pytest.mark.parametrize("name", ["hardware.csv", "cpus.csv", "cloud.csv"])
def test_the_package_data_is_a_verbatim_copy_of_the_shared_data(name: str) -> None:
    shared = SHARED / name
    if not shared.exists():
        pytest.skip("../shared is not present here")
    own = DATA / ("gpus.csv" if name == "hardware.csv" else name)
    assert own.read_bytes() == shared.read_bytes()


def test_gpu_figures_are_converted_to_si_units() -> None:
    cat = builtin()
    for row in rows("gpus.csv"):
        g = cat.gpu(row["id"])
        assert g.memory_bytes == round(float(row["memory_gb"]) * GIB)  # GPU memory "GB" are GiB
        for col, value, scale in (
            ("memory_bandwidth_gbs", g.memory_bandwidth_bytes_per_s, 1e9),
            ("fp32_tflops", g.fp32_flops_per_s, 1e12),
            ("tf32_tflops_dense", g.tf32_flops_per_s, 1e12),
            ("fp16_tensor_tflops_dense", g.fp16_flops_per_s, 1e12),
            ("fp16_tensor_tflops_dense_fp32acc", g.fp16_fp32acc_flops_per_s, 1e12),
            ("bf16_tensor_tflops_dense", g.bf16_flops_per_s, 1e12),
            ("int8_tensor_tops_dense", g.int8_ops_per_s, 1e12),
            ("boost_clock_mhz", g.boost_clock_hz, 1e6),
            ("interconnect_gbs", g.interconnect_bytes_per_s, 1e9),
            ("tdp_w", g.tdp_w, 1.0),
        ):
            expected = number(row[col])
            assert value == (None if expected is None else pytest.approx(expected * scale)), (row["id"], col)
        assert g.notes == (row["notes"] or None) and g.source == row["source_url"]


def test_known_values() -> None:
    cat = builtin()
    a100 = cat.gpu("a100-sxm4-80gb")
    assert a100.memory_bandwidth_bytes_per_s == pytest.approx(2.039e12)
    assert a100.cuda_cc == (8, 0)
    assert a100.peak_flops_per_s("fp16") == a100.fp16_fp32acc_flops_per_s  # what autocast runs
    assert a100.l2_cache_bytes == 40 * 2**20
    mi300x = cat.gpu("mi300x")
    assert mi300x.compute_capability == "gfx942" and mi300x.cuda_cc is None  # AMD: kept as given
    assert cat.gpu("rtx-5090").cuda_cc == (12, 0)
    assert cat.gpu("h200-nvl-141gb").bf16_flops_per_s is None  # empty cell: no credible source gave it
    # consumer cards (advise's "Consumer GPUs" reason) are not workstation ones named alike
    assert [g for g in ("rtx-4090", "rx-7900-xtx", "arc-b580", "rtx-pro-6000-blackwell", "rtx-4000-ada", "rtx-a6000",
                        "h100-sxm5-80gb") if is_consumer(cat.gpu(g))] == ["rtx-4090", "rx-7900-xtx", "arc-b580"]
    assert cat.gpu("max-1550").compute_capability is None
    epyc = cat.cpu("epyc-7763")
    assert epyc.cores == 64 and epyc.base_clock_hz == pytest.approx(2.45e9)
    assert epyc.fp32_flops_per_s == pytest.approx(5017.6e9) and epyc.amx is False
    assert cat.cpu("xeon-platinum-8480plus").amx is True
    assert cat.get("A100-SXM4-80GB") is a100  # ids are looked up case-insensitively
    with pytest.raises(KeyError, match="int4"):
        a100.peak_flops_per_s("int4")


def test_cloud_instances_point_at_catalog_gpus() -> None:
    cat = builtin()
    ids = {g.id for g in cat.gpus}
    assert all(c.gpu_id in ids for c in cat.cloud)
    h100 = cat.instances_for("h100-sxm5-80gb")
    assert {c.provider for c in h100} >= {"AWS", "CoreWeave"}
    per_gpu = [c.price_usd_per_gpu_hour for c in h100]
    assert per_gpu == sorted(per_gpu)
    p5 = next(c for c in h100 if c.instance == "p5.48xlarge")
    assert p5.price_usd_per_gpu_hour == pytest.approx(55.04 / 8) and p5.memory_bytes == 2048 * GIB
    assert cat.instances_for("rtx-4090") == ()


def test_unknown_ids_suggest_close_matches() -> None:
    cat = builtin()
    with pytest.raises(BadInput) as exc:
        cat.get("a100")
    msg = str(exc.value)
    assert msg.startswith("unknown hardware 'a100' (did you mean ")
    assert "a100-sxm4-80gb" in msg and "a100-pcie-40gb" in msg and "`dlgpu hardware list`" in msg
    with pytest.raises(BadInput, match="rtx-4090"):
        cat.gpu("rtx4090")
    with pytest.raises(BadInput, match=r"unknown hardware 'zzz' \(see `dlgpu hardware list`\)"):
        cat.get("zzz")
    with pytest.raises(BadInput, match="is a CPU, not a GPU"):
        cat.gpu("epyc-7763")
    with pytest.raises(BadInput, match="is a GPU, not a CPU"):
        cat.cpu("t4")


# --- user files -----------------------------------------------------------------------------------------

GPU_HEADER = "id,name,vendor,memory_gb,memory_bandwidth_gbs,fp32_tflops,source_url\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_user_file_overrides_by_id_and_adds_new_ids(tmp_path: Path) -> None:
    f = write(tmp_path / "mine.csv", GPU_HEADER
              + "a100-sxm4-80gb,My A100,NVIDIA,80,2000,19.5,https://example.org/a\n"
              + "my-gpu,My GPU,Acme,12,500,10,https://example.org/b\n")
    cat = load_catalog([f], include_user_dir=False)
    a100 = cat.gpu("a100-sxm4-80gb")
    assert a100.name == "My A100" and a100.memory_bandwidth_bytes_per_s == pytest.approx(2.0e12)
    assert a100.origin == str(f) and a100.tf32_flops_per_s is None  # the row replaces the builtin whole
    mine = cat.gpu("my-gpu")
    assert mine.kind == "gpu" and mine.memory_bytes == 12 * GIB and mine.arch is None  # omitted columns
    assert len(cat.gpus) == len(builtin().gpus) + 1 and cat.user_files == (str(f),)
    assert builtin().gpu("a100-sxm4-80gb").name == "A100 80GB SXM4"  # the cached builtin is untouched


def test_user_config_dir_is_read(_no_real_user_catalog: Path) -> None:
    write(_no_real_user_catalog / "cpus.csv", "id,name,vendor,cores,fp32_peak_gflops,source_url\n"
          "my-cpu,My CPU,Acme,8,500,https://example.org/c\n")
    write(_no_real_user_catalog / "cloud.csv",
          "provider,instance,gpu_id,gpu_count,price_usd_per_hour,price_date,source_url\n"
          "Acme Cloud,big-1,t4,1,0.3,2026-01,https://example.org/d\n")
    cat = load_catalog()
    assert cat.cpu("my-cpu").fp32_flops_per_s == pytest.approx(500e9)
    assert cat.instances_for("t4")[0].instance == "big-1"  # the cheapest now
    assert len(cat.user_files) == 2


def test_user_catalog_dir_lookup_order() -> None:
    assert user_catalog_dir({"DLGPU_CONFIG_DIR": "/c", "XDG_CONFIG_HOME": "/x"}) == Path("/c/catalog")
    assert user_catalog_dir({"XDG_CONFIG_HOME": "/x"}) == Path("/x/dlgpu/catalog")
    assert user_catalog_dir({}) == Path.home() / ".config" / "dlgpu" / "catalog"


def test_a_user_cloud_row_may_name_a_user_gpu(tmp_path: Path) -> None:
    gpus = write(tmp_path / "g.csv", GPU_HEADER + "my-gpu,My GPU,Acme,12,500,10,https://example.org/b\n")
    cloud = write(tmp_path / "c.csv", "provider,instance,gpu_id,gpu_count,price_usd_per_hour,price_date,source_url\n"
                  "Acme,x1,my-gpu,2,1.0,2026-02-03,https://example.org/e\n")
    cat = load_catalog([cloud, gpus], include_user_dir=False)
    (inst,) = cat.instances_for("my-gpu")
    assert isinstance(inst, CloudInstance) and inst.price_usd_per_gpu_hour == pytest.approx(0.5)


OK_ROW = "ok-gpu,Fine,Acme,8,400,10,https://example.org/ok\n"
CLOUD_HEADER = "provider,instance,gpu_id,gpu_count,price_usd_per_hour,price_date,source_url\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GPU_HEADER + OK_ROW + "bad,Bad,Acme,8,fast,10,https://x\n",
         "row 3, field memory_bandwidth_gbs: 'fast' is not a number"),
        (GPU_HEADER + OK_ROW + "bad,Bad,Acme,8,-400,10,https://x\n",
         "row 3, field memory_bandwidth_gbs: '-400' must be positive"),
        (GPU_HEADER + OK_ROW + ",Bad,Acme,8,400,10,https://x\n", "row 3, field id: missing"),
        (GPU_HEADER + OK_ROW + OK_ROW, "row 3, field id: duplicate id 'ok-gpu' (also row 2)"),
        (GPU_HEADER + "bad,Bad,Acme,8,400,10,\n", "row 2, field source_url: missing"),
        (GPU_HEADER.replace("fp32_tflops", "fp32_speed"), "row 1, field fp32_speed: unknown column for a GPU file"),
        ("id,name,vendor,memory_gb,source_url\n", "row 1, field fp32_tflops: a GPU file needs the column"),
        ("colour,size\nred,3\n", "row 1: not a catalog file"),
        ("", "row 1: the file is empty"),
        (GPU_HEADER + "Bad Id,Bad,Acme,8,400,10,https://x\n", "row 2, field id: 'Bad Id' is not a valid id"),
        (GPU_HEADER + "local,Bad,Acme,8,400,10,https://x\n", "row 2, field id: 'local' is reserved"),
        (GPU_HEADER + "bad,Bad,Acme,8,400,10,https://x,extra\n", "row 2: 8 cells but the header has 7 columns"),
        (GPU_HEADER + "bad,Bad,Acme,8,nan,10,https://x\n", "row 2, field memory_bandwidth_gbs: 'nan' is not a finite"),
        (CLOUD_HEADER + "Acme,x1,a100,1,2.0,2026-01,https://x\n",
         "row 2, field gpu_id: 'a100' is not a GPU in the catalog (did you mean a100-"),
        (CLOUD_HEADER + "Acme,x1,t4,1.5,2.0,2026-01,https://x\n",
         "row 2, field gpu_count: '1.5' is not a whole number"),
        (CLOUD_HEADER + "Acme,x1,t4,1,2.0,last week,https://x\n", "row 2, field price_date: 'last week' is not a date"),
        (CLOUD_HEADER + "Acme,x1,t4,1,2.0,2026-01,https://x\nAcme,x1,t4,2,3.0,2026-01,https://x\n",
         "row 3, field instance: duplicate provider + instance 'Acme' / 'x1' (also row 2)"),
        ("id,name,vendor,cores,amx,source_url\nmy-cpu,C,Acme,4,maybe,https://x\n",
         "row 2, field amx: 'maybe' is not yes"),
        ("id,name,vendor,cores,source_url\nt4,C,Acme,4,https://x\n", "row 2, field id: 't4' is already a GPU"),
    ],
)
def test_a_malformed_user_file_fails_in_one_line_and_loads_nothing(tmp_path: Path, text: str, needle: str) -> None:
    f = write(tmp_path / "my.csv", text)
    with pytest.raises(CatalogError) as exc:
        load_catalog([f], include_user_dir=False)
    msg = str(exc.value)
    assert isinstance(exc.value, BadInput)
    assert "\n" not in msg
    assert msg.startswith(f"{f} row "), msg
    assert needle in msg, msg
    assert "ok-gpu" not in builtin()  # nothing of the file was kept anywhere


def test_a_missing_catalog_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such catalog file"):
        load_catalog([tmp_path / "nope.csv"], include_user_dir=False)


# --- this machine's CPU -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("model_name", "cpu_id"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "xeon-gold-6248"),
        ("Intel(R) Xeon(R) Platinum 8480+", "xeon-platinum-8480plus"),
        ("AMD EPYC 7763 64-Core Processor", "epyc-7763"),
        ("AMD Ryzen 9 7950X 16-Core Processor", "ryzen-9-7950x"),
        ("Intel(R) Core(TM) i5-12400", "core-i5-12400"),
        ("Apple M2 Max", "apple-m2-max-cpu"),
    ],
)
def test_a_local_cpu_matching_a_catalog_row_is_that_row(model_name: str, cpu_id: str) -> None:
    spec = describe_local_cpu(model_name, 8, ["avx2", "fma"], 3e9, catalog=builtin())
    assert isinstance(spec, CpuSpec) and spec.id == cpu_id


def test_normalized_names() -> None:
    assert normalize_cpu_name("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz") == "intel xeon gold 6248"
    assert normalize_cpu_name("AMD Ryzen 7 5800H with Radeon Graphics") == "amd ryzen 7 5800h"
    assert normalize_cpu_name("Apple M2 Max (12-core CPU)") == "apple m2 max"


def test_an_unknown_cpu_is_estimated_from_its_flags_with_the_basis() -> None:
    cat = builtin()
    spec = describe_local_cpu("Intel(R) Xeon(R) Processor", 2, ["sse2", "avx", "avx2", "fma", "avx512f"], 2.1e9,
                              catalog=cat)  # a vague name must not match a specific Xeon
    assert isinstance(spec, LocalCpu) and spec.estimated
    assert spec.fp32_flops_per_cycle_per_core == 64
    assert spec.fp32_flops_per_s == pytest.approx(2 * 2.1e9 * 64)
    assert spec.basis.startswith("estimated") and "avx512f" in spec.basis and "stackoverflow.com" in spec.basis
    avx2 = describe_local_cpu("Some CPU", 4, ["avx", "avx2", "fma"], 3e9, catalog=cat)
    assert isinstance(avx2, LocalCpu) and avx2.fp32_flops_per_s == pytest.approx(4 * 3e9 * 32)
    no_fma = describe_local_cpu("Some CPU", 4, ["avx", "avx2"], 3e9, catalog=cat)
    assert isinstance(no_fma, LocalCpu) and no_fma.fp32_flops_per_cycle_per_core == 16


def test_the_clock_falls_back_to_the_model_name_then_the_current_clock() -> None:
    cat = builtin()
    named = describe_local_cpu("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", 14, ["avx2", "fma"], None, catalog=cat)
    assert isinstance(named, LocalCpu) and named.clock_hz == pytest.approx(2.4e9)
    assert "nominal clock in the model name" in named.basis
    current = describe_local_cpu("Mystery", 2, ["sse2"], None, catalog=cat, current_clock_hz=1.5e9)
    assert isinstance(current, LocalCpu) and current.fp32_flops_per_s == pytest.approx(2 * 1.5e9 * 8)
    assert "current clock" in current.basis


def test_no_estimate_without_a_per_cycle_figure_or_a_clock() -> None:
    cat = builtin()
    arm = describe_local_cpu("aarch64", 64, ["asimd", "sve"], 2.6e9, catalog=cat)
    assert isinstance(arm, LocalCpu) and arm.fp32_flops_per_s is None and "no FLOP/cycle figure" in arm.basis
    clockless = describe_local_cpu("Mystery", 4, ["avx2", "fma"], None, catalog=cat)
    assert isinstance(clockless, LocalCpu) and clockless.fp32_flops_per_s is None
    assert "clock could not be read" in clockless.basis


def test_this_machine_is_described() -> None:
    name, spec = this_cpu(builtin())
    assert name
    assert isinstance(spec, CpuSpec | LocalCpu)
    if isinstance(spec, LocalCpu):
        assert spec.basis


def test_gpu_spec_is_frozen() -> None:
    g = builtin().gpu("t4")
    assert isinstance(g, GpuSpec)
    with pytest.raises(AttributeError):
        g.tdp_w = 1.0  # type: ignore[misc]
