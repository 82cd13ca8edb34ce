"""``dlgpu``: the root parser. Each module in ``commands`` adds its subparser and runs it.

Errors the user can fix (``BadInput``, argparse's complaints) print one line to stderr and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from dlgpu.errors import BadInput

from .commands import advise, bench, compare, hardware, predict, store, workloads

COMMANDS = (advise, bench, workloads, hardware, predict, store, compare)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    from dlgpu import __version__

    parser = Parser(prog="dlgpu", description="Does this deep-learning workload need a GPU, and which one?")
    parser.add_argument("--version", action="version", version=f"dlgpu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for cmd in COMMANDS:
        cmd.add_parser(sub)
    return parser


def emit_json(doc: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except BadInput as exc:
        sys.stderr.write(f"dlgpu: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dlgpu: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
