"""Start-up time: the commands that should not import torch, each in a fresh process, against the import of torch
itself.

Timed, each ``--repeats`` times (default 5; the median is reported), in rounds so that a change in the machine's
load falls on every command alike:

- ``dlgpu --help``, ``dlgpu hardware list``, ``dlgpu runs`` and ``dlgpu compare --json``, the store holding an
  imported bench document (a real tiny ``dlgpu bench`` of test_resnet on this CPU) and a saved prediction;
- ``dlgpu advise resnet50 --json`` with the profile cache warm (one untimed run first, in the same DLGPU_HOME);
- the reference: ``python -c "import torch, torchvision, transformers"``; and, for scale, ``python -c pass``.

Everything runs in a fresh DLGPU_HOME (a temp dir: the store, the profile cache and the user catalog start
empty); the store and the cache are prepared before timing, outside the timed region.

How a command is timed, and how it says whether it loaded torch:

- by default, the timed process is ``python -c WRAPPER``, where the wrapper does what the ``dlgpu`` console
  script does (``from dlgpu.cli.main import main; sys.exit(main())``, ``sys.argv`` set alike) and, in a
  ``finally``, writes whether torch (torchvision, transformers) is in ``sys.modules`` to a file: the process that
  is timed is the one that reports;
- with ``--entry-point``, the timed process is the console script next to ``sys.executable`` (``python -m
  dlgpu`` where there is none), and one more, untimed run of the wrapper reports torch.

Targets (the start-up issue): each of the first four under 25% of the torch + torchvision + transformers import;
the warm advise under 40%. A table goes to stderr; ``--json`` prints one document (dlgpu.bench-startup/1) on
stdout. Exit 0 whatever the figures (a measurement), 1 with ``--check`` when a target is missed or a command
loaded torch, 2 when a command fails.

Usage: python benchmarks/startup.py [--repeats 5] [--json] [--check] [--entry-point]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = "dlgpu.bench-startup/1"
HEAVY = ("torch", "torchvision", "transformers")
REFERENCE = "import torch, torchvision, transformers"
PREDICT_ON = "a100-sxm4-80gb"

WRAPPER = """\
import json, sys
marker, argv = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["dlgpu", *argv]
code = 1
try:
    from dlgpu.cli.main import main
    code = main(argv)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    heavy = sorted(m for m in HEAVY if sys.modules.get(m) is not None)
    with open(marker, "w") as f:
        json.dump({"code": code, "heavy": heavy}, f)
sys.exit(code)
""".replace("HEAVY", repr(HEAVY))


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    target_ratio: float | None  # of the reference's median; None: shown for scale only


@dataclass
class Timing:
    command: Command
    samples_s: list[float] = field(default_factory=list)
    heavy_loaded: set[str] = field(default_factory=set)
    exit_codes: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s) if self.samples_s else float("nan")


def dlgpu_launcher() -> list[str]:
    """The ``dlgpu`` console script next to this interpreter, else ``python -m dlgpu``."""
    script = Path(sys.executable).parent / ("dlgpu.exe" if os.name == "nt" else "dlgpu")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dlgpu"]


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DLGPU_DB", "DLGPU_CACHE_DIR", "DLGPU_CONFIG_DIR")}
    return env | {"DLGPU_HOME": str(home)}


def prepare(home: Path, launcher: list[str]) -> None:
    """Untimed: a store with an imported bench document and a prediction; the profile cache warm for advise."""
    env = child_env(home)

    def dlgpu(*argv: str) -> None:
        proc = subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"preparing: dlgpu {' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")

    doc = home / "bench-elsewhere.json"
    dlgpu("bench", "-w", "test_resnet", "-d", "cpu", "-p", "fp32", "-t", "infer", "--quick", "--budget", "0.2",
          "--set", "image_size=16", "--no-telemetry", "--no-save", "-o", str(doc))
    dlgpu("import", str(doc))
    dlgpu("advise", "resnet50", "--json", "--no-save")  # traces the profiles and caches them on disk
    dlgpu("predict", "resnet50", "-H", PREDICT_ON)  # saved in the store (the profile is cached by now)


def run_once(cmd: Command, home: Path, launcher: list[str] | None, marker: Path) -> tuple[float, int, set[str]]:
    """One fresh process: its wall time, exit code and the heavy modules it loaded (as far as it can tell: the
    console script, timed with ``--entry-point``, cannot; RuntimeError if it fails)."""
    if cmd.argv and cmd.argv[0] == "-c":  # a plain python one-liner
        argv = [sys.executable, *cmd.argv]
    elif launcher is None:
        marker.unlink(missing_ok=True)
        argv = [sys.executable, "-c", WRAPPER, str(marker), json.dumps(list(cmd.argv))]
    else:
        argv = [*launcher, *cmd.argv]
    env = child_env(home)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    heavy: set[str] = set()
    if cmd.argv[0] == "-c":
        heavy = {m for m in HEAVY if m in cmd.argv[1]}
    elif launcher is None:
        if marker.exists():
            heavy = set(json.loads(marker.read_text())["heavy"])
        elif proc.returncode == 0:
            proc = subprocess.CompletedProcess(argv, 1, "", proc.stderr + "\n(the wrapper wrote no marker)")
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed, proc.returncode, heavy


def measure(commands: list[Command], repeats: int, home: Path, entry_point: bool) -> list[Timing]:
    launcher = dlgpu_launcher() if entry_point else None
    timings = [Timing(c) for c in commands]
    marker = home / "torch-marker.json"
    for _ in range(repeats):
        for t in timings:
            if t.error:
                continue
            try:
                elapsed, code, heavy = run_once(t.command, home, launcher, marker)
            except RuntimeError as exc:
                t.error = str(exc)
                continue
            t.samples_s.append(elapsed)
            t.exit_codes.append(code)
            t.heavy_loaded |= heavy
    if entry_point:  # the timed processes could not say: one more, untimed, through the wrapper
        for t in timings:
            if not t.error and t.command.argv[0] != "-c":
                try:
                    t.heavy_loaded |= run_once(t.command, home, None, marker)[2]
                except RuntimeError as exc:
                    t.error = str(exc)
    return timings


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("dlgpu", *HEAVY):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per command (default 5; the median)")
    ap.add_argument("--json", action="store_true", help=f"print one JSON document ({SCHEMA}) on stdout")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed or torch was loaded")
    ap.add_argument("--entry-point", action="store_true",
                    help="time the dlgpu console script itself; check torch in one more, untimed run")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    reference = Command(REFERENCE, ("-c", REFERENCE), None)
    commands = [
        Command("dlgpu --help", ("--help",), 0.25),
        Command("dlgpu hardware list", ("hardware", "list"), 0.25),
        Command("dlgpu runs", ("runs",), 0.25),
        Command("dlgpu compare --json", ("compare", "--json"), 0.25),
        Command("dlgpu advise resnet50 --json (warm cache)", ("advise", "resnet50", "--json"), 0.40),
        Command("python -c pass", ("-c", "pass"), None),
        reference,
    ]

    load_before = load_avg()
    with tempfile.TemporaryDirectory(prefix="dlgpu-startup-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        prepare(home, dlgpu_launcher())
        prepare_s = time.perf_counter() - t0
        timings = measure(commands, args.repeats, home, args.entry_point)
    load_after = load_avg()

    ref = next(t for t in timings if t.command is reference)
    rows: list[dict[str, Any]] = []
    for t in timings:
        ratio = t.median_s / ref.median_s if t.samples_s and ref.samples_s else None
        target = t.command.target_ratio
        torch_loaded = bool(t.heavy_loaded) if t.command.argv[0] != "-c" else None
        passed = None if target is None else (t.error is None and ratio is not None and ratio < target
                                              and not torch_loaded)
        rows.append({"name": t.command.name, "argv": list(t.command.argv), "samples_s": t.samples_s,
                     "median_s": t.median_s if t.samples_s else None, "ratio_to_reference": ratio,
                     "target_ratio": target, "pass": passed, "torch_loaded": torch_loaded,
                     "heavy_loaded": sorted(t.heavy_loaded), "error": t.error})
    targeted = [r for r in rows if r["target_ratio"] is not None]
    ok = all(r["pass"] for r in targeted)

    ref_s = ref.median_s
    print(f"start-up of dlgpu commands, median of {args.repeats} fresh processes "
          f"({'console script' if args.entry_point else 'wrapper around main()'}); reference: "
          f"python -c \"{REFERENCE}\" = {ref_s:.3f} s; load average {load_before} -> {load_after}",
          file=sys.stderr)
    head = f"{'command':<44} {'median':>8} {'ratio':>7} {'target':>7}  {'torch':<6} result"
    print(head, file=sys.stderr)
    print("-" * len(head), file=sys.stderr)
    for r in rows:
        median_col = f"{r['median_s']:.3f}s" if r["median_s"] is not None else "-"
        ratio_col = f"{r['ratio_to_reference']:.0%}" if r["ratio_to_reference"] is not None else "-"
        target_col = f"<{r['target_ratio']:.0%}" if r["target_ratio"] is not None else ""
        torch_col = {None: "", True: "yes", False: "no"}[r["torch_loaded"]]
        result = "ERROR" if r["error"] else {None: "", True: "ok", False: "MISS"}[r["pass"]]
        print(f"{r['name']:<44} {median_col:>8} {ratio_col:>7} {target_col:>7}  {torch_col:<6} {result}",
              file=sys.stderr)
    for r in rows:
        if r["error"]:
            print(f"\n{r['name']} failed: {r['error']}", file=sys.stderr)

    if args.json:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "repeats": args.repeats,
            "timed_process": "console script" if args.entry_point else "python -c wrapper around dlgpu.cli.main",
            "launcher": dlgpu_launcher(),
            "prepare_s": prepare_s,
            "reference": {"name": REFERENCE, "median_s": ref_s if ref.samples_s else None,
                          "samples_s": ref.samples_s, "error": ref.error},
            "commands": rows,
            "ok": ok,
            "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                       "executable": sys.executable},
            "versions": versions(),
            "machine": {"platform": platform.platform(), "machine": platform.machine(),
                        "processor": platform.processor(), "cpus": os.cpu_count()},
            "load_avg_before": load_before,
            "load_avg_after": load_after,
        }
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    if any(r["error"] for r in rows):
        sys.exit(2)
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
