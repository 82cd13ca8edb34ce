"""What every subcommand shares: the parser class, the flags several commands take (choices read from
``dlgpu.results``), the one JSON document a ``--json`` command prints, and the flag that gives each library
parameter, so that an error the library words in its own terms (``batch_size 0: ...``) reads in flags
(``--batch-size 0: ...``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from dlgpu.errors import BadInput
from dlgpu.results import PRECISIONS, TASKS

if TYPE_CHECKING:
    from rich.console import Console

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What each command module's ``add_parser`` is handed: the root parser's subcommands."""

DB_HELP = "the results database (default: $DLGPU_DB, else the user data dir; see `dlgpu runs --help`)"
CATALOG_HELP = "a CSV of extra or overriding GPUs, CPUs or cloud instances (repeatable)"
INPUT_HELP = "your model's inputs without the batch dim, e.g. 3x224x224 or 128:int64:30522"

FLAGS: dict[str, str] = {
    "batch_size": "--batch-size", "precision": "--precision", "precisions": "--precision", "task": "--task",
    "tasks": "--task", "overrides": "--set", "devices": "--device", "workloads": "--workload",
    "model": "--model", "inputs": "--input", "budget_s": "--budget", "telemetry_period_s": "--telemetry-period",
    "deadline_s": "--deadline", "budget_usd": "--budget", "max_power_w": "--max-power",
    "electricity_usd_per_kwh": "--electricity", "carbon_g_per_kwh": "--carbon-intensity",
    "hours_per_day": "--hours-per-day", "lifetime_years": "--lifetime-years", "power_factor": "--power-factor",
    "pue": "--pue", "dataset_size": "--dataset-size", "epochs": "--epochs", "samples": "--samples",
    "prices_usd": "--price", "hardware": "--hardware", "memory": "--memory", "memory_bytes": "--memory",
    "since": "--since", "until": "--until", "limit": "--limit", "kind": "--kind", "db": "--db",
    "files": "import:", "top": "--top", "runtime": "--runtime", "method": "--method",
    "sources": "",  # its messages name --own/--buy/--rent in their words (see PROSE)
}
"""The flag (or the subcommand) that gives each parameter a ``BadInput`` names; '' where the message itself says."""

PROSE: dict[str, str] = {
    "the dataset size": "--dataset-size", "the epochs": "--epochs", "the samples": "--samples",
    "the sources and hardware asked for": "--own/--buy/--rent and --hardware",
    "give a memory size": "use --memory SIZE",
}
"""The library's words for a parameter inside a message, and the flag the command line says instead."""


class Parser(argparse.ArgumentParser):
    """argparse, with its complaint on one line (no usage) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def emit_json(doc: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    sys.stdout.flush()


def error_line(exc: BadInput) -> str:
    """The one line a bad input prints: the flag in place of the library's parameter name."""
    if exc.param is None or exc.param not in FLAGS:
        return f"dlgpu: error: {exc}"
    message = exc.message
    for words, flag in PROSE.items():
        message = message.replace(words, flag)
    flag = FLAGS[exc.param]
    if not flag or message.startswith(flag):  # the message already names its flag (--set key=value: ...)
        return f"dlgpu: error: {message}"
    return f"dlgpu: error: {flag} {message}"


# --- flags several commands take ---------------------------------------------------------------------------


def add_db(p: argparse.ArgumentParser, help: str = DB_HELP) -> None:
    p.add_argument("--db", type=Path, metavar="PATH", help=help)


def add_json(p: argparse.ArgumentParser, schema: str | None = None, help: str | None = None,
             default: Any = False) -> None:
    """``--json``; ``default=argparse.SUPPRESS`` on an action's parser keeps ``dlgpu CMD --json ACTION``'s."""
    what = f"print one JSON document ({schema}) on stdout" if schema else "print one JSON document on stdout"
    p.add_argument("--json", action="store_true", default=default, help=help or what)


def add_catalog(p: argparse.ArgumentParser, help: str = CATALOG_HELP, default: Any = None) -> None:
    """``--catalog FILE`` (repeatable): a list, empty by default."""
    p.add_argument("--catalog", action="append", type=Path, default=[] if default is None else default,
                   metavar="FILE", help=help)


def add_overrides(p: Any, help: str | None = None) -> None:
    """``--set KEY=VALUE`` (repeatable): a workload parameter. ``p``: a parser or an argument group."""
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help=help)


def add_batch_size(p: Any, help: str | None = None) -> None:
    p.add_argument("--batch-size", "-b", type=int, metavar="N", help=help)


def add_task(p: argparse.ArgumentParser) -> None:
    """One task, train by default."""
    p.add_argument("--task", "-t", default="train", choices=TASKS)


def add_precision(p: argparse.ArgumentParser) -> None:
    """One precision, fp32 by default."""
    p.add_argument("--precision", "-p", default="fp32", choices=PRECISIONS)


def add_precisions(p: Any, help: str) -> None:
    """Several precisions (the library says which are valid: ``all`` is one more for bench)."""
    p.add_argument("--precision", "-p", nargs="+", action="extend", metavar="P", help=help)


def add_model(p: Any, help: str) -> None:
    """``--model`` and ``--input``: the user's own model instead of a registered workload."""
    p.add_argument("--model", metavar="PKG.MODULE:FACTORY", help=help)
    p.add_argument("--input", dest="inputs", metavar="SPEC", help=INPUT_HELP)


def wants_own_model(args: argparse.Namespace) -> bool:
    """Whether ``--model``/``--input`` were given; both or neither."""
    if (args.model is None) != (args.inputs is None):
        raise BadInput("--model and --input go together, e.g. --model mypkg.nets:make --input 3x224x224")
    return args.model is not None


def console(stderr: bool = False) -> Console:
    """The report's console: stdout, or stderr when stdout carries a JSON document."""
    from dlgpu.report.terminal import make_console

    return make_console(stderr=stderr)
