"""One ``dlgpu doctor`` run: the facts gathered here, the checks' verdicts, and the ``dlgpu.doctor/1`` document."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlgpu.home import dlgpu_version, utc_now
from dlgpu.results.vocab import DOCTOR_SCHEMA

from .checks import STATUSES, Check, run_checks
from .facts import Facts
from .frameworks import PROBE_TIMEOUT_S


@dataclass(frozen=True)
class Diagnosis:
    facts: Facts
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(c.status != "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        n = Counter(c.status for c in self.checks)
        return {s: n.get(s, 0) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        f = self.facts
        h = f.host
        return {
            "schema": DOCTOR_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(),
            "ok": self.ok, "exit_code": self.exit_code, "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
            "frameworks": {"pytorch": f.torch.to_dict(), "others": [fw.to_dict() for fw in f.frameworks]},
            "gpus": [g.to_dict() for g in f.gpus()],
            "nvml": f.nvml.to_dict(),
            "pci_gpus": [g.to_dict() for g in f.pci_gpus],
            "cpu": {**f.cpu.to_dict(), "torch_threads": f.torch.num_threads,
                    "torch_interop_threads": f.torch.num_interop_threads},
            "memory": {"total_bytes": h.ram_total_bytes, "available_bytes": h.ram_available_bytes,
                       "cgroup_limit_bytes": h.ram_cgroup_limit_bytes, "usable_bytes": h.ram_usable_bytes},
            "disk": {"data_dir": h.data_dir, "measured_at": h.disk_path, "free_bytes": h.disk_free_bytes,
                     "total_bytes": h.disk_total_bytes},
            "os": dict(h.os),
            "env": dict(f.env),
            "workload": f.workload.to_dict() if f.workload else None,
            "precision": f.precision,
        }


def judge(facts: Facts) -> Diagnosis:
    """The checks' verdicts on ``facts`` (real or fake)."""
    return Diagnosis(facts, tuple(run_checks(facts)))


def diagnose(data_dir: Path | None = None, workload: str | None = None, precision: str = "fp16",
             quick: bool = False, timeout_s: float = PROBE_TIMEOUT_S) -> Diagnosis:
    """This machine, gathered and judged. BadInput for an unknown workload."""
    from .gather import gather

    return judge(gather(data_dir=data_dir, workload=workload, precision=precision, quick=quick,
                        timeout_s=timeout_s))
