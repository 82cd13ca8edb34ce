"""CPU package energy from RAPL through the Linux powercap tree (``/sys/class/powercap``).

Only package zones are summed: ``intel-rapl:<N>`` whose ``name`` reads ``package-<k>``. Sub-zones
(``intel-rapl:0:0`` core, uncore, dram) nest inside their package, ``psys`` (a top-level zone on client
CPUs) covers the whole platform including the package, and ``intel-rapl-mmio:0`` repeats package 0: summing
any of them with the packages would count energy twice. AMD Zen CPUs appear under the same names (Linux 5.8+).

``energy_uj`` has been root-only since Linux 5.10 (CVE-2020-8694), and VMs and containers usually have no
powercap tree at all: both make the backend unavailable, with the reason."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path

from .backend import CpuSensors, Sensors
from .model import EnergyMethod, Sample, Source, counter_delta

POWERCAP_ROOT = Path("/sys/class/powercap")

RAPL_UPDATE_S = 0.001
"""RAPL energy status counters update about every millisecond (Intel SDM vol. 3B, "Platform Specific Power
Management Support", RAPL energy status; Linux Documentation/power/powercap/powercap.rst)."""

_PACKAGE_DIR = re.compile(r"^intel-rapl:(\d+)$")


class RaplUnavailable(Exception):
    """The powercap tree cannot give package energy here; ``str()`` is the reason."""


@dataclass(frozen=True)
class RaplZone:
    name: str  # "package-0"
    path: Path  # the zone directory as found under the root
    max_energy_range_uj: int


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as exc:
        raise RaplUnavailable(
            f"permission denied reading {path} (RAPL energy is root-only since Linux 5.10, CVE-2020-8694; "
            f"grant read access with a udev rule or chmod a+r)") from exc
    except OSError as exc:
        what = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        raise RaplUnavailable(f"cannot read {path}: {exc.strerror or exc} ({what})") from exc


def _read_int(path: Path) -> int:
    text = _read(path)
    try:
        return int(text)
    except ValueError as exc:
        raise RaplUnavailable(f"{path} holds {text!r}, not an integer") from exc


def rapl_zones(root: Path = POWERCAP_ROOT) -> list[RaplZone]:
    """The package zones under ``root``, deduplicated, in package order. Raises ``RaplUnavailable``."""
    if not root.is_dir():
        raise RaplUnavailable(f"no powercap tree at {root} (no RAPL driver, or a VM or container that hides it)")
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise RaplUnavailable(f"cannot list {root}: {exc.strerror or exc}") from exc
    zones: list[tuple[int, RaplZone]] = []
    seen_paths: set[Path] = set()
    seen_names: set[str] = set()
    for entry in entries:
        m = _PACKAGE_DIR.match(entry.name)
        if m is None:
            continue
        name = _read(entry / "name")
        if not name.startswith("package"):
            continue  # psys: the whole platform, the packages included
        real = entry.resolve()
        if real in seen_paths or name in seen_names:
            continue
        seen_paths.add(real)
        seen_names.add(name)
        zones.append((int(m.group(1)), RaplZone(name, entry, _read_int(entry / "max_energy_range_uj"))))
    if not zones:
        raise RaplUnavailable(f"no RAPL package zone (intel-rapl:N named package-*) under {root}")
    return [z for _, z in sorted(zones, key=lambda t: t[0])]


class RaplReader:
    """Reads every package's ``energy_uj`` and keeps a running total that survives wraparound."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.root = root
        self.zones = rapl_zones(root)
        self._last: list[int] = self.read_raw_uj()  # also proves energy_uj is readable
        self.total_uj = 0

    def read_raw_uj(self) -> list[int]:
        return [_read_int(z.path / "energy_uj") for z in self.zones]

    def reset(self) -> None:
        self._last = self.read_raw_uj()
        self.total_uj = 0

    def advance(self) -> int:
        """Read the counters; add what each advanced since the last read (one wrap allowed) to ``total_uj``."""
        now = self.read_raw_uj()
        self.total_uj += sum(int(counter_delta(b, a, z.max_energy_range_uj))
                             for b, a, z in zip(self._last, now, self.zones, strict=True))
        self._last = now
        return self.total_uj


class RaplBackend:
    """Package energy from RAPL; CPU utilization and memory from ``sensors``. Power at each sample is the
    energy since the previous sample over the time since it."""

    source: Source = "measured-rapl"
    energy_method: EnergyMethod = "counter"
    update_interval_s = RAPL_UPDATE_S

    def __init__(self, root: Path = POWERCAP_ROOT, sensors: Sensors | None = None) -> None:
        self.reader = RaplReader(root)  # raises RaplUnavailable
        self.sensors: Sensors = sensors if sensors is not None else CpuSensors()
        names = ", ".join(z.name for z in self.reader.zones)
        self.label = f"RAPL {names}"
        self.reason: str | None = None
        self.basis = (f"RAPL package energy counters ({names}) under {root}, energy_uj differenced with "
                      f"wraparound at max_energy_range_uj; the whole package(s), every process on them; "
                      f"utilization = {self.sensors.label}")
        self._last_t = 0.0
        self._last_uj = 0
        self._primed = False

    def start(self, timestamp_s: float) -> Sample:
        s = self.sensors.start(timestamp_s)
        self._last_t, self._last_uj = timestamp_s, 0
        try:
            self.reader.reset()
            self._primed = True
        except RaplUnavailable:  # became unreadable since the probe: this sample has no energy
            self._primed = False
            return Sample(timestamp_s, memory_used_bytes=s.memory_used_bytes)
        return Sample(timestamp_s, energy_j=0.0, memory_used_bytes=s.memory_used_bytes)

    def read(self, timestamp_s: float) -> Sample:
        s = self.sensors.read(timestamp_s)
        try:
            if not self._primed:  # start's read failed: begin counting from here, not from a stale reading
                self.reader.reset()
                self._primed = True
                self._last_t = timestamp_s
                return Sample(timestamp_s, energy_j=0.0, utilization_pct=s.utilization_pct,
                              memory_used_bytes=s.memory_used_bytes)
            total = self.reader.advance()
        except RaplUnavailable:
            return Sample(timestamp_s, utilization_pct=s.utilization_pct, memory_used_bytes=s.memory_used_bytes)
        dt = timestamp_s - self._last_t
        power = (total - self._last_uj) / 1e6 / dt if dt > 0 else None
        self._last_t, self._last_uj = timestamp_s, total
        return Sample(timestamp_s, power_w=power, energy_j=total / 1e6, utilization_pct=s.utilization_pct,
                      memory_used_bytes=s.memory_used_bytes)

    def close(self) -> None:
        self.sensors.close()
