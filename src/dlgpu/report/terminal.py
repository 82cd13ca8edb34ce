"""Rich tables on a console (stderr when stdout carries JSON): bench runs and their progress, workloads, the
hardware catalog and comparisons. Predictions, profiles, validation and calibration: ``terminal_predict``;
advice: ``terminal_advise``; the results store: ``terminal_runs``. Renders only: every figure and judgment
comes from the result it is handed."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dlgpu.catalog import CloudInstance, HardwareEntry, HardwareListing
from dlgpu.report.compare_tabular import bench_notes as tabular_notes
from dlgpu.report.compare_tabular import headline as tabular_headline
from dlgpu.report.model import Comparison
from dlgpu.results import BenchReport, BenchResult
from dlgpu.units import GIB, format_bytes, format_duration, format_rate
from dlgpu.workloads.registry import WorkloadSpec

STATUS_STYLE = {"ok": "", "skipped": "yellow", "failed": "red"}


def make_console(stderr: bool = False) -> Console:
    """A console on stdout or stderr. Rich assumes 80 columns off a terminal; a log file or a pipe is
    better served by one wide line per table row."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 200)


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def workload_label(r: BenchResult) -> str:
    """The workload, with what ran it where that is not PyTorch (nor the workload's own name): 'llama-3.2-1b
    (llama.cpp)', 'random_forest (scikit-learn)'."""
    return r.workload if r.runtime in ("pytorch", r.workload) else f"{r.workload} ({r.runtime})"


def _step(r: BenchResult) -> str:
    if r.step_time is None:
        return "-"
    s = f"{format_duration(r.step_time.median)} ± {format_duration(r.step_time.iqr)}"
    return s + " (noisy)" if r.step_time.noisy else s


def _known_to(r: BenchResult) -> str:
    """The median's 95% interval as +-% of it; '(ceiling)' where the time ceiling stopped timing first."""
    rel = None if r.step_time is None else r.step_time.ci_rel
    if rel is None:
        return "-"
    text = f"±{100 * rel:.2g}%"
    return text + " (ceiling)" if r.stop_reason in ("budget", "max_steps") else text


def _rate(r: BenchResult) -> str:
    text = format_rate(r.samples_per_s)
    if r.contended:
        share = (r.contention or {}).get("others_share")
        text += " [red]contended[/]" + ("" if share is None else f" [red]{share:.0%}[/]")
    ratio = slowed_ratio(r)
    if ratio is not None:
        text += f" [red]slowed[/] [red]{ratio:.0%}[/]"
    return text


def slowed_ratio(r: BenchResult) -> float | None:
    """The lower speed ratio (now / probed, ``measure.speed``) of a result measured while this machine ran slower
    than its probe; None where it was not slowed (or not checked)."""
    speed = r.settings.get("machine_speed") or {}
    if not speed.get("slowed"):
        return None
    ratios = [float(x) for x in (speed.get("ratio_before"), speed.get("ratio_after")) if x is not None]
    return min(ratios) if ratios else None


ESTIMATED_MARK = "*"
"""Suffix of a power, energy or efficiency figure that is estimated (TDP x utilization), not measured."""


def sig(value: float | None, unit: str = "", mark: str = "") -> str:
    """3 significant digits with an SI prefix for small values ('12.3 mJ'), or '-'."""
    if value is None:
        return "-"
    scaled, prefix = value, ""
    if unit and 0 < abs(value) < 1:
        for p, f in (("m", 1e3), ("µ", 1e6), ("n", 1e9)):
            scaled, prefix = value * f, p
            if abs(scaled) >= 1:
                break
    text = f"{scaled:,.0f}" if abs(scaled) >= 1000 else f"{scaled:.3g}"
    return f"{text} {prefix}{unit}".rstrip() + mark


def _energy_cells(r: BenchResult) -> tuple[str, str, str, str, str]:
    """power, J/sample, samples/s/W, utilization, MFU: estimated figures marked, a throttled run flagged."""
    mark = ESTIMATED_MARK if r.energy_source == "estimated" else ""
    power = sig(r.power_w, "W", mark)
    if r.throttled:
        power += " [red]throttled[/]"
    util = "-" if r.utilization_pct is None else f"{r.utilization_pct:.0f}%"
    mfu = "-" if r.mfu is None else (f"{100 * r.mfu:.2g}%" if r.mfu < 0.1 else f"{100 * r.mfu:.0f}%")
    return (power, sig(r.energy_j_per_sample, "J", mark), sig(r.samples_per_s_per_w, "", mark), util, mfu)


def bench_table(report: BenchReport, footnotes: dict[str, int]) -> Table:
    """The results table; the reasons of skipped and failed rows go to ``footnotes`` (reason -> number)."""
    t = Table(title="dlgpu bench: measured on this machine", title_justify="left", show_lines=False)
    for col, justify in (("workload", "left"), ("task", "left"), ("device", "left"), ("precision", "left"),
                         ("batch", "right"), ("samples/s", "right"), ("step (median ± IQR)", "right"),
                         ("median ±95%", "right"),
                         ("peak mem", "right"), ("vs CPU fp32", "right"), ("real task", "right"),
                         ("power", "right"), ("J/sample", "right"), ("samples/s/W", "right"), ("util", "right"),
                         ("MFU", "right")):
        t.add_column(col, justify=justify, no_wrap=col in ("workload", "precision", "device", "power"))  # type: ignore[arg-type]
    loud_base = {(r.workload, r.task) for r in report.results
                 if r.device == "cpu" and r.precision == "fp32" and r.status == "ok" and r.contended}
    for r in report.results:
        if r.status != "ok":
            mark = footnotes.setdefault(r.reason or r.status, len(footnotes) + 1)
            t.add_row(escape(workload_label(r)), r.task, escape(r.device), r.precision, str(r.batch_size or "-"),
                      f"[{STATUS_STYLE[r.status]}]{r.status} [{mark}][/]", *([""] * 10))
            continue
        batch = str(r.batch_size)
        if r.requested_batch_size and r.batch_size != r.requested_batch_size:
            batch += f" (asked {r.requested_batch_size})"
        t.add_row(
            escape(workload_label(r)), r.task, escape(r.device), r.precision, batch,
            _rate(r), _step(r), _known_to(r), format_bytes(r.peak_mem_bytes),
            "-" if r.speedup_vs_cpu_fp32 is None else f"{r.speedup_vs_cpu_fp32:.2f}x" + (
                " [red](contended)[/]" if r.contended or (r.workload, r.task) in loud_base else ""),
            "-" if r.projection is None else format_duration(r.projection.time_s),
            *_energy_cells(r),
        )
    return t


def energy_notes(report: BenchReport) -> list[str]:
    """How the power, energy, utilization and MFU columns were obtained, per device, in a line each."""
    ok = [r for r in report.results if r.status == "ok"]
    lines = []
    for dev in dict.fromkeys(r.device for r in ok):
        rows = [r for r in ok if r.device == dev]
        sources = sorted({r.energy_source for r in rows if r.energy_source})
        info = report.telemetry.get(dev) or {}
        tdp = (info.get("facts") or {}).get("tdp_w")
        idle = (info.get("idle_baseline") or {}).get("avg_power_w")
        if "estimated" in sources:
            lines.append(f"{ESTIMATED_MARK} {dev}: estimated from TDP x utilization, not measured (no power sensor; "
                         f"TDP {sig(tdp, 'W')}: {escape((info.get('facts') or {}).get('tdp_basis', '?'))}).")
        measured = [s for s in sources if s.startswith("measured")]
        if measured:
            lines.append(f"{dev}: power and energy measured ({', '.join(measured)}).")
        if "unavailable" in sources:
            why = next((r.energy_basis for r in rows if r.energy_source == "unavailable"), None)
            lines.append(f"{dev}: no power or energy figures ({escape(why or '?')}).")
        if any(r.power_w is not None for r in rows):
            line = (f"{dev}: J/sample and samples/s/W are from the power drawn (gross: power / samples/s, as MLPerf "
                    "Power counts it)")
            if idle is not None:
                line += (f"; net of the idle baseline ({sig(idle, 'W')}, measured before the runs) in --json "
                         "(net_energy_j_per_sample) where a run drew clearly more than idle")
            lines.append(line + ".")
        if any(r.throttled for r in rows):
            lines.append(f"{dev}: throttled = clocks held down by a power cap or heat during the run.")
    if any(r.mfu is not None for r in ok):
        lines.append("MFU = FLOPs per step (dlgpu's operator profile) / median step time / the device's peak FLOP/s "
                     "at that precision (see mfu_basis in --json).")
    return lines


def headlines(report: BenchReport, specs: dict[str, WorkloadSpec]) -> list[str]:
    """One sentence per workload and task: the real task's time on the fastest measured configuration
    of each device (projected from measured throughput)."""
    lines = []
    best: dict[tuple[str, str, str], BenchResult] = {}
    for r in report.results:
        if r.status != "ok" or r.projection is None:
            continue
        k = (r.workload, r.task, r.device)
        if k not in best or (r.samples_per_s or 0) > (best[k].samples_per_s or 0):
            best[k] = r
    for (w, _task, dev), r in best.items():  # in the order they were measured
        assert r.projection is not None
        what = "on this CPU" if dev == "cpu" else f"on {dev}"
        desc = specs[w].description.split(",")[0] if w in specs else w
        lines.append(f"{desc}, {r.projection.description}: {format_duration(r.projection.time_s)} {what} "
                     f"({r.precision}, {format_rate(r.samples_per_s)} {_unit(specs.get(w))}/s measured)")
    return lines


def _unit(spec: WorkloadSpec | None) -> str:
    return "samples" if spec is None else f"{spec.sample_unit}s"


def print_bench(console: Console, report: BenchReport, specs: dict[str, WorkloadSpec]) -> None:
    footnotes: dict[str, int] = {}
    console.print(bench_table(report, footnotes))
    for reason, mark in footnotes.items():
        console.print(f"  [{mark}] {reason}", highlight=False)
    cpu = next((d for d in report.machine.devices if d.kind == "cpu"), None)
    notes = []
    if cpu is not None:
        notes.append(f"CPU: {cpu.name}, {cpu.threads_used} threads on {cpu.physical_cores} physical cores"
                     f"{', native bf16' if cpu.details.get('native_bf16') else ''}.")
    notes.append("samples/s and step times are measured (median of per-step times after warm-up); "
                 "'real task' is projected: task samples / measured samples/s.")
    notes.append("median ±95%: the median step time's 95% bootstrap confidence interval, as ± its share; "
                 "(ceiling) = the time budget ran out before the interval reached its target.")
    if any(r.runtime == "pytorch" for r in report.results):
        notes.append("peak mem: allocator peak on accelerators; process peak RSS (incl. PyTorch itself) on the CPU.")
    gguf = [r for r in report.results if r.runtime == "llama.cpp" and r.status == "ok"]
    if gguf:
        first = gguf[0].settings
        notes.append(f"(llama.cpp): llama-cpp-python {first.get('llama_cpp_python', '?')} on the CPU with "
                     f"{first.get('n_threads_available', '?')} threads (fewer where measured again after contention: "
                     "n_threads in --json), on a synthetic GGUF of the model with random weights "
                     "(precision = its weight type; written, measured, deleted); a step is one llama_decode call "
                     "timed by dlgpu; peak mem = the process's peak RSS minus its RSS before loading. llama.cpp's own "
                     "counters and the equivalent llama-bench line: settings in --json.")
    llm = [r for r in report.results if (specs.get(r.workload) is not None
                                        and specs[r.workload].family == "llm" and r.status == "ok")]
    if any(r.task == "decode" for r in llm):
        notes.append("LLM decode: a sample is one output token; the step is the time per output token (TPOT) of "
                     "each of the batch's sequences, samples/s the tokens/s of all of them (per sequence: / batch), "
                     "J/sample the energy per token.")
    if any(r.task == "infer" for r in llm):
        notes.append("LLM infer is the prefill: a sample is one prompt token, the step the time to process the "
                     "prompt (time to first token, without sampling).")
    tuned = [r for r in report.results if r.task == "finetune" and r.status == "ok"]
    if tuned:
        notes.append("finetune: a sample is one sequence; a step is grad_accum micro-batches (forward, loss, backward) "
                     "and one optimizer step, batch = micro-batch x grad_accum; precision = the dtype the weights are "
                     "stored in (fp32: mixed precision under bf16 autocast). Bytes of weights, gradients and "
                     "optimizer state in --json (settings).")
        for r in tuned:
            st = r.settings
            tokens = st.get("tokens_per_s")
            notes.append(f"{escape(r.workload)} finetune {st.get('method', '?')} ({r.precision}, {r.device}): "
                         f"{st.get('trainable_parameters', 0):,} of {st.get('total_parameters', 0):,} parameters "
                         f"train, {st.get('optimizer', '?')}, seq_len {st.get('seq_len', '?')}"
                         + ("" if tokens is None else f", {format_rate(tokens)} tokens/s"))
    notes += tabular_notes(report.results)
    contended = [r for r in report.results if r.contended]
    if contended:
        notes.append(f"contended ({len(contended)} results): other processes used more than their share of the "
                     "CPUs while these were timed (the share shown; measured again once, on the cores others left "
                     "free, the faster kept). Their figures are low and are not used as the measured basis of "
                     "advise or compare while an uncontended measurement exists.")
    notes += speed_notes(report)
    notes += energy_notes(report)
    for line in headlines(report, specs):
        console.print(f"• {line}")
    for line in filter(None, (tabular_headline(r) for r in report.results)):
        console.print(f"• {escape(line)}")
    for n in notes:
        console.print(f"[dim]{n}[/]")
    if report.interrupted:
        console.print("[yellow]Interrupted: the results above are what was measured before Ctrl-C.[/]")
    warning = speed_warning(report)
    if warning:  # one line on stderr, whatever carries the table
        Console(file=sys.stderr, highlight=False, width=None if sys.stderr.isatty() else 200).print(
            f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def speed_notes(report: BenchReport) -> list[str]:
    """How fast this machine ran against its probe (``measure.speed``), in a line: checked or why not."""
    speed = next((r.settings.get("machine_speed") for r in report.results
                  if r.device == "cpu" and r.settings.get("machine_speed")), None)
    if not speed:
        return []
    if not speed.get("checked"):
        return [f"machine speed {escape(str(speed.get('why') or 'not checked'))}"]

    def pct(x: Any) -> str:
        return "-" if x is None else f"{float(x):.0%}"
    verdict = (f"slowed (under {float(speed.get('threshold') or 0):.0%}): timings not comparable with runs at full "
               "speed" if speed.get("slowed") else "at its probed speed")
    parts = [f"{escape(str(m.get('reference')))} before {pct(m.get('ratio_before'))}, after "
             f"{pct(m.get('ratio_after'))}" for m in speed.get("references") or []]
    return [f"machine speed (reference GEMMs now / `dlgpu probe` run {str(speed.get('probe_run') or '')[:8]}): "
            f"{'; '.join(parts)}: {verdict}."]


def speed_warning(report: BenchReport) -> str | None:
    """One line for a run measured while this machine ran slower than its probe (``measure.speed``): the ratio and
    that its timings are not comparable with runs at full speed; None otherwise."""
    speed = next((r.settings.get("machine_speed") for r in report.results
                  if (r.settings.get("machine_speed") or {}).get("slowed")), None)
    if not speed:
        return None

    def pct(x: Any) -> str:
        return "-" if x is None else f"{float(x):.0%}"
    return (f"this machine ran {speed.get('reference', 'the reference')} at {pct(speed.get('ratio_before'))} of its "
            f"probed speed before the run and {pct(speed.get('ratio_after'))} after (slowed: under "
            f"{pct(speed.get('threshold'))}); these timings are not comparable with runs at full speed")


def print_saved(console: Console, report: BenchReport, db: Path | None, output: Path | None) -> None:
    """Where the run was saved: the results store (with the command that shows it) and the JSON file."""
    if db is not None and report.run_id:
        console.print(f"[dim]saved as run {report.run_id} in {escape(str(db))} (`dlgpu show {report.run_id[:8]}`)[/]")
    if output is not None:
        console.print(f"[dim]written: {escape(str(output))}[/]")


class BenchProgress:
    """A progress bar on stderr while a bench runs, and a dim line per finished result: the suite's observer
    (``planned``, ``started``, ``finished``). Use as a context manager around the run; the bar appears once the
    suite is planned, so that a bad input prints its one line and nothing else."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("planning", total=None)
        self.shown = False

    def __enter__(self) -> BenchProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.shown:
            self.progress.stop()

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start()
        self.shown = True

    def started(self, label: str) -> None:
        self.progress.update(self.task, description=label)

    def finished(self, result: BenchResult) -> None:
        self.progress.advance(self.task)
        what = result.status if result.status != "ok" else f"{result.samples_per_s:.3g} samples/s"
        self.progress.console.print(f"[dim]{escape(result.workload)} {result.task} {escape(result.device)} "
                                    f"{result.precision}: {what}[/]", highlight=False)


def workloads_table(specs: Sequence[WorkloadSpec]) -> Table:
    t = Table(title="dlgpu workloads", title_justify="left")
    for col in ("name", "family", "description", "batch", "quick batch", "real task"):
        t.add_column(col)
    for s in specs:
        f = s.facts
        task = f.dataset + (f", {_epochs(f.epochs)}" if f.epochs else "")
        t.add_row(s.name, s.family, s.description, str(s.batch_size), str(s.quick_batch_size), task)
    return t


def print_workload(console: Console, spec: WorkloadSpec, parameters: int | None) -> None:
    console.print(f"[bold]{spec.name}[/] ({spec.family}): {spec.description}")
    if parameters is not None:
        console.print(f"  parameters: {parameters:,} (counted on the meta device)")
    console.print(f"  optimizer: {spec.optimizer}; channels-last: {spec.channels_last}; "
                  f"batch {spec.batch_size} (quick {spec.quick_batch_size}); one sample = one {spec.sample_unit}")
    if spec.architecture_source:
        console.print(f"  architecture: {spec.architecture_source}")
    t = Table(title="parameters (--set name=value)", title_justify="left")
    for col in ("name", "default", "type", "meaning"):
        t.add_column(col)
    for p in spec.params:
        t.add_row(p.name, str(p.default), p.type_name, p.help)
    console.print(t)
    f = spec.facts
    console.print("[bold]real task[/]")
    rows: list[tuple[str, object]] = [
        ("dataset", f.dataset),
        ("training samples", None if f.train_samples is None else f"{f.train_samples:,}"),
        ("training tokens", None if f.train_tokens is None else f"{f.train_tokens:,.0f}"),
        ("size on disk", format_bytes(f.dataset_bytes) if f.dataset_bytes else None),
        ("epochs", f.epochs), ("target quality", f.target_quality),
        ("evaluation samples", None if f.eval_samples is None else f"{f.eval_samples:,}"),
        ("notes", f.notes or None), ("source", f.source),
    ]
    optional = {"training tokens", "notes"} | ({"training samples"} if f.train_tokens else set())
    for label, value in rows:
        if value is None and label in optional:
            continue
        console.print(f"  {label}: {'not published / unknown' if value is None else value}")


# --- the hardware catalog -------------------------------------------------------------------------


_PEAK_LABELS = {
    "fp32_flops_per_s": "FP32 peak",
    "tf32_flops_per_s": "TF32 tensor peak (dense)",
    "fp16_flops_per_s": "FP16 tensor peak (dense, FP16 accumulate)",
    "fp16_fp32acc_flops_per_s": "FP16 tensor peak (dense, FP32 accumulate)",
    "bf16_flops_per_s": "BF16 peak (dense)",
    "int8_ops_per_s": "INT8 tensor peak (dense)",
}
_LABELS = {"tdp_w": "TDP", "sm_count": "SM / CU count", "l2_cache_bytes": "L2 cache", "origin": "from",
           "interconnect_bytes_per_s": "interconnect bandwidth", "gpu_id": "GPU", "vcpus": "vCPUs"}
_UNIT_SUFFIXES = ("_bytes_per_s", "_flops_per_s", "_ops_per_s", "_bytes", "_hz", "_w", "_usd")
_UNKNOWN = "not published / unknown"


def _num(value: float | None, scale: float, unit: str, fmt: str = ".4g") -> str:
    """A datasheet-style number ('2039 GB/s', '19.5 TFLOPS'), or '-' where no source gave it."""
    return "-" if value is None else f"{value / scale:{fmt}}{unit}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def hardware_tables(listing: HardwareListing) -> list[Table]:
    """One table per kind listed. Bandwidth in decimal GB/s and compute in TFLOPS (dense), as datasheets
    state them; memory in GiB, as GPU memory is built and reported."""
    tables = []
    if listing.kind in ("gpu", "all"):
        t = Table(title="GPUs and accelerators (peaks are dense TFLOPS; fp16 = tensor cores with FP32 "
                  "accumulate, what autocast runs)", title_justify="left")
        for col in ("id", "name", "memory", "bandwidth", "fp32", "tf32", "bf16", "fp16", "TDP", "launch price"):
            t.add_column(col, justify="left" if col in ("id", "name") else "right", no_wrap=col == "id")
        for g in listing.gpus:
            t.add_row(g.id, g.name, _num(g.memory_bytes, GIB, " GiB", "g"),
                      _num(g.memory_bandwidth_bytes_per_s, 1e9, " GB/s"),
                      *(_num(v, 1e12, "") for v in (g.fp32_flops_per_s, g.tf32_flops_per_s, g.bf16_flops_per_s,
                                                     g.fp16_fp32acc_flops_per_s)),
                      _num(g.tdp_w, 1, " W", "g"), _usd(g.launch_price_usd))
        tables.append(t)
    if listing.kind in ("cpu", "all"):
        t = Table(title="CPUs (peaks in TFLOPS at the clock each row's notes state)", title_justify="left")
        for col in ("id", "name", "cores", "threads", "base clock", "memory bandwidth", "fp32", "bf16", "TDP",
                    "launch price"):
            t.add_column(col, justify="left" if col in ("id", "name") else "right", no_wrap=col == "id")
        for c in listing.cpus:
            t.add_row(c.id, c.name, str(c.cores), "-" if c.threads is None else str(c.threads),
                      _num(c.base_clock_hz, 1e9, " GHz", ".3g"), _num(c.memory_bandwidth_bytes_per_s, 1e9, " GB/s"),
                      _num(c.fp32_flops_per_s, 1e12, ""), _num(c.bf16_flops_per_s, 1e12, ""),
                      _num(c.tdp_w, 1, " W", "g"), _usd(c.launch_price_usd))
        tables.append(t)
    if listing.kind in ("cloud", "all"):
        tables.append(cloud_table(listing.cloud, "Cloud instances (on-demand, at the date the price was stated)"))
    return tables


def print_hardware(console: Console, listing: HardwareListing) -> None:
    for table in hardware_tables(listing):
        console.print(table)
    if listing.user_files:
        console.print(f"[dim]merged user catalog files: {escape(', '.join(listing.user_files))}[/]")


def cloud_table(instances: Sequence[CloudInstance], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("provider", "instance", "gpu", "gpus", "$/h", "$/GPU-h", "date", "region"):
        t.add_column(col, justify="right" if col in ("gpus", "$/h", "$/GPU-h") else "left")
    for c in instances:
        t.add_row(c.provider, c.instance, c.gpu_id, str(c.gpu_count), f"{c.price_usd_per_hour:,.2f}",
                  f"{c.price_usd_per_gpu_hour:,.2f}", c.price_date, c.region or "-")
    return t


def _label(key: str) -> str:
    if key in _PEAK_LABELS or key in _LABELS:
        return _PEAK_LABELS.get(key) or _LABELS[key]
    for suffix in _UNIT_SUFFIXES:
        if key.endswith(suffix):
            key = key.removesuffix(suffix)
            break
    return key.replace("_", " ")


def _value(key: str, value: object) -> str:
    """A field in human units, read off the unit its name carries."""
    if value is None:
        return _UNKNOWN
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if not isinstance(value, int | float):
        return str(value)
    if key.endswith("_bytes_per_s"):
        return f"{value / 1e9:,.6g} GB/s ({value:.4g} bytes/s)"
    if key.endswith("_bytes"):
        return f"{format_bytes(value)} ({value:,} bytes)"
    if key.endswith("_flops_per_s"):
        return f"{value / 1e12:,.4g} TFLOP/s" if value >= 1e12 else f"{value / 1e9:,.4g} GFLOP/s"
    if key.endswith("_ops_per_s"):
        return f"{value / 1e12:,.4g} TOPS"
    if key.endswith("_hz"):
        return f"{value / 1e9:.4g} GHz" if value >= 1e9 else f"{value / 1e6:.4g} MHz"
    if key.endswith("_w"):
        return f"{value:g} W"
    if key.endswith("_usd"):
        return f"${value:,.2f}"
    if key == "price_usd_per_hour":
        return f"${value:,.2f} per hour"
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_hardware_entry(console: Console, entry: HardwareEntry) -> None:
    """Every field with its unit, then the source and notes; a GPU's cloud instances; for ``local``,
    whether the description is the catalog's or an estimate, and on what basis."""
    d = entry.spec.to_dict()
    if entry.type == "local":
        console.print(f"[bold]This machine's CPU[/]: {entry.local_model_name}")
        if entry.estimated:
            console.print("  [yellow]not in the catalog: described from what this machine reports[/]")
        else:
            console.print(f"  matches catalog entry [bold]{d['id']}[/] (figures below are the catalog's)")
    if "id" in d:
        console.print(f"[bold]{d['name']}[/] ({d['id']}, {entry.type if entry.type != 'local' else 'cpu'})")
    skip = {"id", "name", "source", "notes", "basis", "model_name", "estimated", "cuda_cc"}
    for key, value in d.items():
        if key not in skip:
            console.print(f"  {_label(key)}: {_value(key, value)}")
    if "basis" in d:
        console.print(f"  basis: {d['basis']}")
    if d.get("source"):
        console.print(f"  source: {d['source']}")
    if d.get("notes"):
        console.print(f"  notes: {d['notes']}")
    if entry.type == "gpu":
        if entry.cloud:
            console.print(cloud_table(entry.cloud, "cloud instances carrying it (cheapest per GPU-hour first)"))
        else:
            console.print("  cloud instances: none in the catalog")


# --- comparison ---------------------------------------------------------------------------------------------

SOURCE_STYLE = {"measured": "", "estimated": "yellow", "predicted": "cyan", "catalog": "dim", "computed": ""}


def comparison_tables(comp: Comparison) -> list[Table]:
    from dlgpu.report.format import format_cell, source_mark

    out = []
    for tab in comp.tables:
        t = Table(title=tab.title, title_justify="left", caption=escape(tab.caption), caption_justify="left")
        for col in tab.columns:
            t.add_column(col.title, justify="left" if col.unit == "text" else "right")
        for row in tab.rows:
            cells = []
            for cell in row:
                text = escape(format_cell(cell)) + (source_mark(cell.source) if cell.unit != "text" else "")
                style = SOURCE_STYLE.get(cell.source or "", "") if cell.unit != "text" else ""
                cells.append(f"[{style}]{text}[/]" if style else text)
            t.add_row(*cells)
        out.append(t)
    return out


def print_comparison(console: Console, comp: Comparison) -> None:
    from dlgpu.report.format import SOURCE_MARKS

    legend = ", ".join(f"{mark} {src}" for src, mark in SOURCE_MARKS.items())
    console.print(f"[bold]dlgpu compare[/]: {len(comp.runs)} runs ({legend})")
    for run in comp.runs:
        console.print(f"  [dim]{run.id[:12]} {run.kind:7} {run.created_at} {escape(run.machine)}: "
                      f"{escape(run.summary)}[/]")
    for tab, table in zip(comp.tables, comparison_tables(comp), strict=True):
        if not tab.rows:
            console.print(f"[dim]{escape(tab.title)}: nothing to compare in these runs[/]")
            continue
        console.print(table)
        for note in tab.notes:
            console.print(f"  {escape(note)}")
    for note in comp.notes:
        console.print(f"[dim]{escape(note)}[/]")
