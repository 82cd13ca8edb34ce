"""``dlgpu doctor`` on the console: what this machine is (frameworks, GPUs and driver, CPU, memory, disk, OS),
then each check with its verdict, what it found and the fix. Renders only: the verdicts are ``doctor.checks``'."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.doctor import Diagnosis
from dlgpu.units import format_bytes

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _machine_lines(d: Diagnosis) -> list[tuple[str, str]]:
    f = d.facts
    t, c, h = f.torch, f.cpu, f.host
    rows: list[tuple[str, str]] = []
    if not t.installed:
        rows.append(("PyTorch", "not installed"))
    elif t.error:
        rows.append(("PyTorch", f"{t.version or ''} (import fails: {t.error})"))
    else:
        build = {"cuda": f"CUDA {t.cuda}", "rocm": f"ROCm {t.hip}", "cpu": "CPU-only"}[t.build]
        rows.append(("PyTorch", f"{t.version}, {build} build; cuDNN {t.cudnn_text or 'none'}; CUDA available "
                     f"{'yes' if t.cuda_available else 'no'}; MPS {'yes' if t.mps_available else 'no'}; XPU "
                     f"{'yes' if t.xpu_available else 'no'}; {t.num_threads} intra-op threads"))
    for fw in f.frameworks:
        if not fw.installed:
            rows.append((fw.name, "not installed"))
            continue
        what = (fw.note if fw.retired else f"import fails: {fw.error}" if fw.error else "not probed"
                if fw.accelerators is None else "sees " + (", ".join(fw.accelerators) or "no accelerator"))
        rows.append((fw.name, f"{fw.version or ''} ({what})".strip()))
    n = f.nvml
    rows.append(("NVIDIA driver", f"{n.driver_version}, supports CUDA {n.cuda_driver_version}" if n.available
                 else f"none (NVML: {n.reason})"))
    gpus = f.gpus()
    if not gpus:
        rows.append(("GPUs", "none (PCI bus, NVML, torch)"))
    for g in gpus:
        tc = g.tensor_cores
        rows.append((f"GPU {g.index}", ", ".join(x for x in (
            g.name, format_bytes(g.memory_bytes) if g.memory_bytes else None,
            f"compute capability {g.compute_capability}" if g.compute_capability else None,
            None if tc is None else f"tensor cores: {', '.join(tc)}" if tc else "no tensor cores",
            f"via {g.source}") if x)))
    rows.append(("CPU", f"{c.model}; {c.physical_cores} physical / {c.logical_cores} logical cores; "
                 f"{c.usable_cores} usable (affinity {c.affinity_cores}, cgroup quota "
                 f"{f'{c.cgroup_cpus:g} CPUs' if c.cgroup_cpus else 'none'})"))
    simd = c.simd()
    rows.append(("SIMD", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in simd.items())
                 + f" (flags: {' '.join(c.flags) or 'none read'})"))
    limit = f", cgroup limit {format_bytes(h.ram_cgroup_limit_bytes)}" if h.ram_cgroup_limit_bytes else ""
    rows.append(("RAM", f"{format_bytes(h.ram_total_bytes)} total, {format_bytes(h.ram_available_bytes)} "
                 f"available{limit}"))
    rows.append(("Disk", f"{format_bytes(h.disk_free_bytes) if h.disk_free_bytes is not None else '?'} free of "
                 f"{format_bytes(h.disk_total_bytes) if h.disk_total_bytes is not None else '?'} at "
                 f"{h.disk_path} (data dir {h.data_dir})"))
    rows.append(("OS", f"{h.os.get('platform', '')}, Python {h.os.get('python', '')}"))
    if f.workload:
        w = f.workload
        rows.append(("Workload", f"{w.name}: {w.dataset}, "
                     f"{format_bytes(w.dataset_bytes) if w.dataset_bytes else 'size unknown'}"))
    return rows


def print_diagnosis(console: Console, d: Diagnosis) -> None:
    machine = Table(title="This machine", title_justify="left", show_header=False, box=None, pad_edge=False)
    machine.add_column(style="bold", no_wrap=True)
    machine.add_column()
    for k, v in _machine_lines(d):
        machine.add_row(k, escape(v))
    console.print(machine)
    console.print()
    checks = Table(title="Checks", title_justify="left")
    for col in ("check", "status", "found", "fix"):
        checks.add_column(col, no_wrap=col in ("check", "status"))
    for c in d.checks:
        checks.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", escape(c.found), escape(c.fix))
    console.print(checks)
    n = d.counts()
    verdict = "[green]ready[/]" if d.ok else "[bold red]not ready[/]"
    console.print(f"{verdict}: {n['pass']} passed, {n['warn']} warned, {n['fail']} failed, {n['skip']} skipped "
                  f"(exit code {d.exit_code})")
