"""Measure in a child process, for CPU runs that might exhaust the machine's memory.

On the CPU an out-of-memory is not an exception: the kernel's OOM killer sends SIGKILL. Running a large
configuration in a spawned child keeps that from taking dlgpu (and what it already measured) down with it:
the child sends each result as soon as it has it, and a killed child becomes a ``failed`` result that
says what happened."""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dlgpu.results import BenchResult, DeviceInfo

from .timer import Budget

if TYPE_CHECKING:
    from .harness import TelemetrySetup

_DONE = "done"


def _child(out: Any, workload: str, params: dict[str, Any], device: DeviceInfo, task: str,
           precisions: list[str], batch_size: int, budget: Budget, overrides: dict[str, Any],
           settings: dict[str, Any], threads: int, telemetry: TelemetrySetup | None = None,
           finetune: dict[str, Any] | None = None) -> None:
    from dlgpu.devices import use_threads
    from dlgpu.workloads import get_workload

    from .harness import build, measure

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    use_threads(threads)
    spec = get_workload(workload)
    step_batch = batch_size * int((finetune or {}).get("grad_accum", 1))  # finetune: micro-batches per step
    try:
        built = build(spec, params, device, finetune=finetune)
    except Exception as exc:
        for prec in precisions:
            out.put(BenchResult(workload=workload, task=task, device=device.id, precision=prec,
                                batch_size=step_batch, requested_batch_size=step_batch,
                                overrides=overrides, status="failed",
                                reason=f"build failed: {type(exc).__name__}: {exc}"[:500]))
        out.put(_DONE)
        return
    for prec in precisions:
        out.put(measure(built, task, prec, batch_size, budget, overrides=overrides, settings=settings,
                        telemetry=telemetry))
    out.put(_DONE)


def _killed_reason(exitcode: int | None, memory_note: str) -> str:
    if exitcode is not None and exitcode < 0:
        sig = -exitcode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGKILL:
            return f"the measuring process was killed ({name}), almost surely by the kernel's out-of-memory " \
                   f"killer: {memory_note}"
        return f"the measuring process was killed by {name}"
    return f"the measuring process exited with code {exitcode} before finishing"


def measure_isolated(
    workload: str,
    params: Mapping[str, Any],
    device: DeviceInfo,
    task: str,
    precisions: Sequence[str],
    batch_size: int,
    budget: Budget,
    overrides: Mapping[str, Any],
    settings: Mapping[str, Any],
    threads: int,
    memory_note: str,
    telemetry: TelemetrySetup | None = None,
    finetune: Mapping[str, Any] | None = None,
) -> Iterator[BenchResult]:
    """Yield a result for each precision, in order, as the child sends them; those it never sent are
    ``failed`` with the reason. Closing the generator early (Ctrl-C in the caller) kills the child.

    ``telemetry``: the child opens its own sensor backend from it (an open one does not cross processes).
    ``finetune``: task finetune's job (``measure.finetune``), built in the child."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(
        target=_child, name=f"dlgpu-{workload}-{task}",
        args=(q, workload, dict(params), device, task, list(precisions), batch_size, budget,
              dict(overrides), {**settings, "isolated_process": True}, threads,
              None if telemetry is None else telemetry.portable(), None if finetune is None else dict(finetune)),
    )
    proc.start()
    sent = 0
    try:
        while True:
            try:
                item = q.get(timeout=0.2)
            except queue.Empty:
                if not proc.is_alive():
                    # Drain anything sent just before exiting.
                    try:
                        item = q.get(timeout=0.5)
                    except queue.Empty:
                        break
                else:
                    continue
            if item == _DONE:
                break
            sent += 1
            yield item
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    if sent < len(precisions):
        why = _killed_reason(proc.exitcode, memory_note)
        step_batch = batch_size * int((finetune or {}).get("grad_accum", 1))  # finetune: micro-batches per step
        for prec in precisions[sent:]:
            yield BenchResult(workload=workload, task=task, device=device.id, precision=prec,
                              batch_size=step_batch, requested_batch_size=step_batch,
                              overrides=dict(overrides), status="failed", reason=why)
