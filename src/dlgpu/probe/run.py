"""The measurements of ``dlgpu probe``, per device: matrix-multiply throughput per precision over a sweep of square
sizes, STREAM-style copy and triad bandwidth on arrays well beyond the last-level cache, host-to-device and
device-to-host bandwidth (pinned and pageable; GPUs only), and the overhead of one eager op and of one empty
kernel launch.

Every measurement: random inputs (``torch.randn``; ``torch.randint`` for int8; ``torch.rand`` for the bandwidth
arrays, which are large: never zeros), a warm-up, the device synchronized around every timed step
(``measure.timer.Timer`` with ``measure.harness.synchronizer``; the clock and the synchronizer are the Timer's
seams, which the tests fake), raw per-step times kept, the median and its spread reported, and the window checked
for other processes' CPU use (``measure.contention``, as ``bench`` does: a contended figure is measured once more
after a pause, the uncontended attempt kept if any, else the fastest, and every attempt listed). One timed step
runs enough calls (``reps_per_step``) to outlast the clock's and the synchronization's own cost.

torch is imported inside the functions only: importing this module stays torch-free."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlgpu.catalog import Catalog
from dlgpu.measure.contention import MAX_REMEASURE, REMEASURE_PAUSE_S, ContentionProbe
from dlgpu.measure.timer import Budget, Timer, Timing
from dlgpu.results import DeviceInfo, StepStats
from dlgpu.results.probe import ProbeFigure, Skipped

from .peaks import Peak, cpu_peaks, gpu_peaks

MiB = 2**20

STREAM_LLC_MULTIPLE = 4
"""Bandwidth arrays are at least this many times the last-level cache (STREAM's rule), so that the figure is the
memory's and not the cache's."""
STREAM_MIN_BYTES = 256 * MiB
STREAM_MAX_BYTES = 2 * 2**30
STREAM_MEMORY_SHARE = 1 / 8
"""Each of the three bandwidth arrays is at most this share of the memory available when the probe starts (and at
most ``STREAM_MAX_BYTES``): the probe must not push the machine into swap."""


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe measures and how long. ``stream_bytes_*``: bytes per bandwidth array (None: from the cache
    size, ``stream_array_bytes``); ``min_step_s_*``: a timed step runs calls until it lasts about this long;
    ``max_call_s``: a GEMM size whose one call would take longer (extrapolated from the smaller sizes) is skipped."""

    gemm_sizes_cpu: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    gemm_sizes_gpu: tuple[int, ...] = (1024, 2048, 4096, 8192)
    stream_bytes_cpu: int | None = None
    stream_bytes_gpu: int | None = None
    transfer_bytes: int = 256 * MiB
    dispatch_calls: int = 1000
    min_step_s_cpu: float = 0.002
    min_step_s_gpu: float = 0.005
    max_call_s: float = 3.0
    budget: Budget = field(default_factory=lambda: Budget(warmup_steps=2, min_steps=5, max_steps=50, budget_s=2.0,
                                                          ci_rel=0.02))
    optimizer_budget: Budget = field(default_factory=lambda: Budget(warmup_steps=1, min_steps=3, max_steps=10,
                                                                    budget_s=1.0, ci_rel=0.03))
    quick: bool = False


OPTIMIZER_ARRAY_SHARE = 2
"""The optimizer probe's four tensors together are this share of one bandwidth array: twice the last-level cache
(one step of a 100M-parameter bf16 tensor takes about half a second on a 2-core CPU)."""

FULL = ProbeSettings()
# --quick keeps the CPU's STREAM arrays beyond the last-level cache (stream_bytes_cpu None: sized from it), as a
# full probe does: arrays inside the cache would overstate the bandwidth that predictions on -H local then use
QUICK = ProbeSettings(gemm_sizes_cpu=(256, 1024), gemm_sizes_gpu=(1024, 4096), stream_bytes_cpu=None,
                      stream_bytes_gpu=256 * MiB, transfer_bytes=64 * MiB, dispatch_calls=200,
                      budget=Budget(warmup_steps=1, min_steps=3, max_steps=20, budget_s=0.5, ci_rel=0.05), quick=True)


@dataclass(frozen=True)
class Seams:
    """The Timer's seams for every figure: the clock (seconds) and, where given, the synchronizer used instead of
    the device's (tests fake both); ``remeasure``: how many times a contended figure is measured again."""

    clock: Callable[[], float] = time.perf_counter
    sync: Callable[[], None] | None = None
    remeasure: int = MAX_REMEASURE


# --- sizes ---------------------------------------------------------------------------------------------------------

def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The size of the CPU's last-level cache as the OS reports it (Linux sysfs), or None. A virtual machine
    reports its host's (shared) cache."""
    best: tuple[int, int] | None = None
    try:
        for index in root.glob("index*"):
            level = int((index / "level").read_text().strip())
            text = (index / "size").read_text().strip().upper()
            mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * mult
            if best is None or level > best[0]:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return None if best is None else best[1]


def stream_array_bytes(llc_bytes: int | None, available_bytes: int) -> tuple[int, str]:
    """(bytes per bandwidth array, how it was chosen): ``STREAM_LLC_MULTIPLE`` x the last-level cache, at least
    ``STREAM_MIN_BYTES``, at most ``STREAM_MAX_BYTES`` and ``STREAM_MEMORY_SHARE`` of the available memory."""
    cap = min(STREAM_MAX_BYTES, int(available_bytes * STREAM_MEMORY_SHARE))
    want = max(STREAM_MIN_BYTES, STREAM_LLC_MULTIPLE * (llc_bytes or 0))
    size = max(MiB, min(want, cap)) // MiB * MiB
    why = (f"{STREAM_LLC_MULTIPLE}x the {llc_bytes / MiB:,.0f} MiB last-level cache" if llc_bytes and
           want > STREAM_MIN_BYTES else f"at least {STREAM_MIN_BYTES / MiB:,.0f} MiB")
    if size < want:
        why += f", capped at {size / MiB:,.0f} MiB by the memory available"
    return size, why


def cache_note(array_bytes: int, llc_bytes: int | None) -> str | None:
    """A warning where the arrays are not ``STREAM_LLC_MULTIPLE`` x the cache: the figure may include cache hits."""
    if llc_bytes and array_bytes < STREAM_LLC_MULTIPLE * llc_bytes:
        return (f"arrays of {array_bytes / MiB:,.0f} MiB are under {STREAM_LLC_MULTIPLE}x the "
                f"{llc_bytes / MiB:,.0f} MiB last-level cache the OS reports: the figure may include cache hits")
    return None


# --- timing ----------------------------------------------------------------------------------------------------------

def gemm_flops(m: int, n: int, k: int) -> float:
    """FLOPs of one (m x k) @ (k x n) product: a multiply and an add per term."""
    return 2.0 * m * n * k


STREAM_ARRAYS: dict[str, int] = {"copy": 2, "triad": 3}
"""Arrays a STREAM kernel reads or writes once each: copy (b = a) reads a and writes b; triad (a = b + s c) reads
b and c and writes a. Bytes per call = that x the array's bytes (STREAM's convention: no write-allocate traffic)."""


def stream_bytes(kind: str, array_bytes: int) -> float:
    return float(STREAM_ARRAYS[kind] * array_bytes)


def reps_for(one_call_s: float, min_step_s: float) -> int:
    """Calls per timed step: enough that a step lasts about ``min_step_s``."""
    return max(1, math.ceil(min_step_s / max(one_call_s, 1e-9)))


def _time_once(fn: Callable[[], object], sync: Callable[[], None], tries: int = 3) -> float:
    """The shortest of ``tries`` synchronized calls (to size a timed step: one slow call must not shrink it)."""
    best = math.inf
    for _ in range(tries):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def timed(step: Callable[[], object], sync: Callable[[], None], budget: Budget, seams: Seams,
          ) -> tuple[Timing, dict[str, Any] | None, bool | None]:
    """Warm up and time ``step`` (``Timer``), with a contention probe around the timed steps; measured again while
    contended, at most ``seams.remeasure`` times. (timing kept, its contention with every attempt, contended)."""
    attempts: list[tuple[Timing, Any]] = []
    while True:
        probe = ContentionProbe()
        timing = Timer(step, seams.sync or sync, seams.clock).run(budget, on_timed_start=probe.start)
        attempts.append((timing, probe.stop()))
        if not attempts[-1][1].contended or len(attempts) > seams.remeasure:
            break
        time.sleep(REMEASURE_PAUSE_S)
    calm = [a for a in attempts if not a[1].contended]
    kept = min(calm or attempts, key=lambda a: statistics.median(a[0].samples_s))
    contention = kept[1].to_dict()
    if len(attempts) > 1:
        contention["attempts"] = [{"others_share": c.others_share, "contended": c.contended,
                                   "median_s": statistics.median(t.samples_s), "kept": (t, c) is kept}
                                  for t, c in attempts]
    return kept[0], contention, bool(kept[1].contended)


def figure(device: DeviceInfo, what: str, step: Callable[[], object], work_per_step: float, reps: int,
           sync: Callable[[], None], budget: Budget, seams: Seams, peak: Peak | None = None, *,
           precision: str | None = None, size: int | None = None, pinned: bool | None = None,
           settings: dict[str, Any] | None = None) -> ProbeFigure:
    timing, contention, contended = timed(step, sync, budget, seams)
    return ProbeFigure(device=device.id, what=what, precision=precision, size=size, work_per_step=work_per_step,
                       reps_per_step=reps, step_time=StepStats(tuple(timing.samples_s)),
                       warmup_steps=len(timing.warmup_s), stop_reason=timing.stop_reason, pinned=pinned,
                       contended=contended, contention=contention,
                       peak=None if peak is None else peak.value, peak_basis="" if peak is None else peak.basis,
                       peak_short="" if peak is None else peak.short, settings=dict(settings or {}))


def _repeat(fn: Callable[[], object], reps: int) -> Callable[[], None]:
    def step() -> None:
        for _ in range(reps):
            fn()
    return step


# --- per device ------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """CPU work on ``n`` threads (None: as they are) inside; the previous count restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _float32_matmul(torch: Any, precision: str) -> Iterator[None]:
    """fp32 GEMMs in full fp32 (``highest``), tf32 on TF32 tensor cores (``high``); restored afterwards."""
    before = torch.get_float32_matmul_precision()
    if precision in ("fp32", "tf32"):
        torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def gemm_operands(torch: Any, precision: str, n: int, dev: Any) -> Callable[[], object]:
    """One n x n x n product at ``precision`` on ``dev``, on random inputs, as eager code calls it:
    ``torch.matmul(a, b)`` with its output allocated by the call (on a CPU, an output of 32 MiB or more is a fresh
    mapping each time, whose page faults are part of what eager PyTorch pays; ``benchmarks/probe_gemm.py`` holds the
    figure to a plain ``torch.matmul`` loop), ``torch._int_mm`` for int8."""
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=dev)
        return lambda: torch._int_mm(a, b)
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn((n, n), dtype=torch.float32, device=dev).to(dtype)
    b = torch.randn((n, n), dtype=torch.float32, device=dev).to(dtype)
    return lambda: torch.matmul(a, b)


def gemm_unsupported(torch: Any, device: DeviceInfo, precision: str) -> str | None:
    """Why ``precision``'s GEMM is not probed on ``device`` (None: it is)."""
    from dlgpu.devices.precision import unsupported_reason

    if precision == "tf32" and device.kind == "cpu":
        return unsupported_reason(device, "tf32")
    if precision == "fp16" and device.kind == "cpu":
        fast = getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None)
        if fast is None or not fast():
            return ("no fp16 matrix path in PyTorch's oneDNN on this CPU (it needs AVX512-FP16 or AMX-FP16): fp16 "
                    "would be emulated")
        return None
    if precision in ("tf32", "bf16", "fp16") and device.kind != "cpu":
        return unsupported_reason(device, precision)
    if precision == "int8":
        dev = torch.device(device.id)
        try:
            a = torch.randint(-128, 128, (32, 32), dtype=torch.int8, device=dev)
            torch._int_mm(a, a)
        except Exception as exc:  # no int8 kernel for this device in this build
            return f"torch._int_mm does not run on {device.id}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def gemm_sweep(torch: Any, device: DeviceInfo, precision: str, sizes: tuple[int, ...], settings: ProbeSettings,
               peak: Peak, seams: Seams, sync: Callable[[], None],
               on_figure: Callable[[ProbeFigure], None]) -> tuple[list[ProbeFigure], list[Skipped]]:
    dev = torch.device(device.id)
    gpu = device.kind != "cpu"
    min_step = settings.min_step_s_gpu if gpu else settings.min_step_s_cpu
    figures: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    rate: float | None = None  # of the last size, to skip sizes that would take too long
    for n in sizes:
        if rate and gemm_flops(n, n, n) / rate > settings.max_call_s:
            skipped.append(Skipped(device.id, "gemm", precision,
                                   f"n={n}: one call would take about {gemm_flops(n, n, n) / rate:.1f} s at the "
                                   f"rate of n={figures[-1].size} (over {settings.max_call_s:g} s)"))
            continue
        with _float32_matmul(torch, precision):
            call = gemm_operands(torch, precision, n, dev)
            call()  # first call: kernel selection, AMX tile setup, cuBLAS handles
            one = _time_once(call, sync)
            reps = reps_for(one, min_step)
            fig = figure(device, "gemm", _repeat(call, reps), reps * gemm_flops(n, n, n), reps, sync,
                         settings.budget, seams, peak, precision=precision, size=n,
                         settings=_gemm_settings(torch, device, precision))
        del call
        figures.append(fig)
        rate = fig.value
        on_figure(fig)
    return figures, skipped


def _gemm_settings(torch: Any, device: DeviceInfo, precision: str) -> dict[str, Any]:
    s: dict[str, Any] = {"op": "torch._int_mm(a, b)" if precision == "int8" else "torch.matmul(a, b)",
                         "inputs": "torch.randint(-128, 128)" if precision == "int8" else "torch.randn"}
    if device.kind == "cpu":
        s["threads"] = torch.get_num_threads()
    if precision in ("fp32", "tf32"):
        s["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    if precision == "bf16" and device.kind == "cpu" and not device.details.get("native_bf16"):
        s["note"] = "this CPU has no bf16 arithmetic (no AVX512-BF16, AMX-BF16 or Arm BF16): emulated"
    return s


def stream_figures(torch: Any, device: DeviceInfo, array_bytes: int, how: str, llc_bytes: int | None,
                   settings: ProbeSettings, peak: Peak, seams: Seams, sync: Callable[[], None],
                   on_figure: Callable[[ProbeFigure], None]) -> list[ProbeFigure]:
    """Copy (b = a) and triad (a = b + 3 c) on three fp32 arrays of ``array_bytes`` each, on random data."""
    dev = torch.device(device.id)
    n = array_bytes // 4
    a = torch.rand(n, device=dev)
    b = torch.rand(n, device=dev)
    c = torch.rand(n, device=dev)
    kernels: dict[str, Callable[[], object]] = {"copy": lambda: b.copy_(a),
                                                "triad": lambda: torch.add(b, c, alpha=3.0, out=a)}
    base: dict[str, Any] = {"array_bytes": n * 4, "dtype": "fp32", "inputs": "torch.rand", "sizing": how,
                            "last_level_cache_bytes": llc_bytes}
    if device.kind == "cpu":
        base["threads"] = torch.get_num_threads()
    note = cache_note(n * 4, llc_bytes) if device.kind == "cpu" else None
    if note:
        base["note"] = note
    out = []
    min_step = settings.min_step_s_gpu if device.kind != "cpu" else settings.min_step_s_cpu
    for kind, call in kernels.items():
        call()
        reps = reps_for(_time_once(call, sync), min_step)
        op = "b.copy_(a)" if kind == "copy" else "torch.add(b, c, alpha=3.0, out=a)"
        fig = figure(device, kind, _repeat(call, reps), reps * stream_bytes(kind, n * 4), reps, sync,
                     settings.budget, seams, peak, precision="fp32", size=n, settings={**base, "op": op})
        out.append(fig)
        on_figure(fig)
    return out  # the arrays go with this frame


OPTIMIZER_TENSORS = 4
"""What torch's AdamW keeps per parameter tensor: the parameter, its gradient and the two moments."""
OPTIMIZER_PRECISIONS = ("bf16", "fp32")
"""The dtypes an optimizer probe updates in: bf16 ("bf16-true" fine-tuning keeps its states in the weights' dtype)
and fp32 (mixed precision's states, peft's fp32 adapters)."""


def optimizer_figures(torch: Any, device: DeviceInfo, array_bytes: int, llc_bytes: int | None,
                      settings: ProbeSettings, seams: Seams, sync: Callable[[], None],
                      on_figure: Callable[[ProbeFigure], None]) -> tuple[list[ProbeFigure], list[Skipped]]:
    """One ``torch.optim.AdamW`` step (torch's default implementation for the device: the single-tensor loop on a
    CPU, the multi-tensor ``foreach`` one on a GPU) over one parameter tensor with a gradient, in bf16 and fp32:
    parameters updated per second. The four tensors (parameter, gradient, two moments) together are
    ``array_bytes`` (beyond the last-level cache, as the bandwidth arrays): what a fine-tuning step's optimizer
    streams. A model's optimizer step is this rate over its trainable parameters (``finetune.perf``)."""
    dev = torch.device(device.id)
    out: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    for precision in OPTIMIZER_PRECISIONS:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
        if precision == "bf16" and device.kind != "cpu":
            why = gemm_unsupported(torch, device, "bf16")
            if why:
                skipped.append(Skipped(device.id, "optimizer", precision, why))
                continue
        size = torch.empty(0, dtype=dtype).element_size()
        n = max(1, array_bytes // (OPTIMIZER_TENSORS * size))
        param = torch.nn.Parameter(torch.rand(n, device=dev).to(dtype))
        param.grad = torch.rand(n, device=dev).to(dtype) * 1e-3
        opt = torch.optim.AdamW([param], lr=1e-5)
        opt.step()  # allocates the moments (not timed: a job's first step)
        base: dict[str, Any] = {"op": "torch.optim.AdamW([p]).step()", "tensor_elements": n, "dtype": precision,
                                "working_set_bytes": OPTIMIZER_TENSORS * n * size, "last_level_cache_bytes": llc_bytes,
                                "implementation": "foreach" if device.kind != "cpu" else "single-tensor (torch's CPU "
                                                                                         "default)"}
        if device.kind == "cpu":
            base["threads"] = torch.get_num_threads()
        fig = figure(device, "optimizer", opt.step, float(n), 1, sync, settings.optimizer_budget, seams, None,
                     precision=precision, size=n, settings=base)
        del opt, param
        out.append(fig)
        on_figure(fig)
    return out, skipped


def transfer_figures(torch: Any, device: DeviceInfo, nbytes: int, settings: ProbeSettings, peak: Peak,
                     seams: Seams, sync: Callable[[], None],
                     on_figure: Callable[[ProbeFigure], None]) -> tuple[list[ProbeFigure], list[Skipped]]:
    """Host to device and device to host, from and to pinned and pageable host memory (random bytes)."""
    dev = torch.device(device.id)
    out: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    on_device = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=dev)
    for pinned in (True, False):
        host = torch.randint(0, 256, (nbytes,), dtype=torch.uint8)
        if pinned:
            try:
                host = host.pin_memory()
            except Exception as exc:  # e.g. MPS: no pinned host memory
                for what in ("h2d", "d2h"):
                    skipped.append(Skipped(device.id, what, None, f"pinned host memory: {type(exc).__name__}: "
                                                                  f"{str(exc).splitlines()[0][:200]}"))
                continue
        for what in ("h2d", "d2h"):
            src, dst = (host, on_device) if what == "h2d" else (on_device, host)

            def call(src: Any = src, dst: Any = dst, pinned: bool = pinned) -> object:
                return dst.copy_(src, non_blocking=pinned)
            call()
            sync()
            reps = reps_for(_time_once(call, sync), settings.min_step_s_gpu)
            fig = figure(device, what, _repeat(call, reps), float(reps * nbytes), reps, sync, settings.budget, seams,
                         peak, size=nbytes, pinned=pinned,
                         settings={"bytes": nbytes, "op": f"dst.copy_(src, non_blocking={pinned})",
                                   "inputs": "torch.randint(0, 256, dtype=uint8)"})
            out.append(fig)
            on_figure(fig)
        del host
    del on_device
    return out, skipped


def overhead_figures(torch: Any, device: DeviceInfo, settings: ProbeSettings, seams: Seams,
                     sync: Callable[[], None],
                     on_figure: Callable[[ProbeFigure], None]) -> tuple[list[ProbeFigure], list[Skipped]]:
    """Per-op eager dispatch (``torch.add`` of two 1-element tensors, its output allocated, as eager code does) and,
    on a CUDA GPU, one empty kernel's launch (``torch.cuda._sleep(0)``): seconds per call over a loop of calls."""
    dev = torch.device(device.id)
    calls = settings.dispatch_calls
    x = torch.rand(1, device=dev)
    y = torch.rand(1, device=dev)
    out: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    base: dict[str, Any] = {"calls_per_step": calls}
    if device.kind == "cpu":
        base["threads"] = torch.get_num_threads()
    fig = figure(device, "dispatch", _repeat(lambda: torch.add(x, y), calls), float(calls), calls, sync,
                 settings.budget, seams, None, settings={**base, "op": "torch.add(x, y) of 1-element tensors"})
    out.append(fig)
    on_figure(fig)
    if device.kind == "cuda":
        sleep = getattr(torch.cuda, "_sleep", None)
        if sleep is None:
            skipped.append(Skipped(device.id, "launch", None, "torch.cuda._sleep is absent from this torch build"))
        else:
            fig = figure(device, "launch", _repeat(lambda: sleep(0), calls), float(calls), calls, sync, settings.budget,
                         seams, None, settings={**base, "op": "torch.cuda._sleep(0): an empty kernel"})
            out.append(fig)
            on_figure(fig)
    elif device.kind != "cpu":
        skipped.append(Skipped(device.id, "launch", None, f"no empty-kernel launch is probed on {device.kind}"))
    return out, skipped


def probe_device(device: DeviceInfo, settings: ProbeSettings, catalog: Catalog, seams: Seams | None = None,
                 on_figure: Callable[[ProbeFigure], None] | None = None,
                 ) -> tuple[list[ProbeFigure], list[Skipped]]:
    """Every figure of one device (the CPU with ``torch.get_num_threads()`` threads: the caller sets them)."""
    import psutil
    import torch

    from dlgpu.measure.harness import synchronizer
    from dlgpu.results.probe import GEMM_PRECISIONS

    seams = seams or Seams()
    report = on_figure or (lambda f: None)
    sync = synchronizer(device)
    gpu = device.kind != "cpu"
    peaks = gpu_peaks(device, catalog) if gpu else cpu_peaks(catalog)
    figures: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    sizes = settings.gemm_sizes_gpu if gpu else settings.gemm_sizes_cpu
    for precision in GEMM_PRECISIONS:
        why = gemm_unsupported(torch, device, precision)
        if why:
            skipped.append(Skipped(device.id, "gemm", precision, why))
            continue
        figs, skip = gemm_sweep(torch, device, precision, sizes, settings, peaks[f"gemm:{precision}"], seams, sync,
                                report)
        figures += figs
        skipped += skip
    if gpu:
        llc = None
        props = torch.cuda.get_device_properties(torch.device(device.id)) if device.kind == "cuda" else None
        l2 = int(getattr(props, "L2_cache_size", 0) or 0) if props is not None else 0
        free = int(torch.cuda.mem_get_info(torch.device(device.id))[0]) if device.kind == "cuda" else (
            device.memory_bytes or 8 * 2**30)
        want = settings.stream_bytes_gpu or max(2**30, STREAM_LLC_MULTIPLE * l2)
        array = min(want, free // 8) // MiB * MiB
        how = (f"{array / MiB:,.0f} MiB" + (f" ({array / l2:,.0f}x the {l2 / MiB:,.0f} MiB L2)" if l2 else ""))
    else:
        llc = last_level_cache_bytes()
        if settings.stream_bytes_cpu:
            array, how = settings.stream_bytes_cpu, f"{settings.stream_bytes_cpu / MiB:,.0f} MiB (--quick)"
        else:
            array, how = stream_array_bytes(llc, int(psutil.virtual_memory().available))
    figures += stream_figures(torch, device, array, how, llc, settings, peaks["bandwidth"], seams, sync, report)
    figs, skip = optimizer_figures(torch, device, array // OPTIMIZER_ARRAY_SHARE, llc, settings, seams, sync, report)
    figures += figs
    skipped += skip
    if gpu:
        figs, skip = transfer_figures(torch, device, settings.transfer_bytes, settings, peaks["link"], seams, sync,
                                      report)
        figures += figs
        skipped += skip
    else:
        for what in ("h2d", "d2h"):
            skipped.append(Skipped(device.id, what, None, "host-device transfers are probed on GPUs; the CPU is the "
                                                          "host"))
    figs, skip = overhead_figures(torch, device, settings, seams, sync, report)
    return figures + figs, skipped + skip


def notes_on(figures: list[ProbeFigure]) -> list[str]:
    """What a reader must know about the figures: a measurement above its peak says the peak understates the
    device; contended figures."""
    notes = []
    best: dict[tuple[str, str], ProbeFigure] = {}
    for f in figures:
        frac = f.fraction_of_peak
        if frac is None or frac <= 1.0:
            continue
        key = (f.device, f.label)
        if key not in best or frac > (best[key].fraction_of_peak or 0.0):
            best[key] = f
    for (dev, label), f in best.items():
        why = (": the clock it assumes is the OS's current clock, which may be below the one the cores sustain"
               if "current clock" in f.peak_basis else "")
        notes.append(f"{dev} {label} reached {f.fraction_of_peak:.0%} of its peak at n={f.size} (peak: "
                     f"{f.peak_short or f.peak_basis}): that peak understates this device{why}")
    busy = [f for f in figures if f.contended]
    if busy:
        notes.append(f"{len(busy)} figure(s) measured while other processes used the CPUs (contended, after "
                     f"{MAX_REMEASURE} more attempt): {', '.join(sorted({f.label for f in busy}))}; a prediction "
                     "uses only an uncontended probe")
    return notes
