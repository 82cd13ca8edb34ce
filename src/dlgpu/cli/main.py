"""``dlgpu``: the root parser. Each module in ``commands`` adds its subcommand and runs it: it parses the flags
into typed arguments, calls one api function and hands the result to ``report``.

Errors the user can fix (``BadInput``, argparse's complaints) print one line to stderr and exit 2; the line
names the flag, not the library's parameter (``cli.common.error_line``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlgpu.errors import BadInput

from .commands import (
    advise,
    analyze,
    bench,
    calibrate,
    compare,
    doctor,
    export,
    hardware,
    import_,
    predict,
    probe,
    report,
    runs,
    show,
    validate,
    workloads,
)
from .common import Parser, error_line

COMMANDS = (advise, bench, workloads, hardware, predict, analyze, validate, calibrate, runs, show, export, import_,
            compare, report, doctor, probe)
"""In the order ``dlgpu --help`` lists them."""


def build_parser() -> Parser:
    from dlgpu.home import dlgpu_version

    parser = Parser(prog="dlgpu", description="Does this deep-learning workload need a GPU, and which one?")
    parser.add_argument("--version", action="version", version=f"dlgpu {dlgpu_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for cmd in COMMANDS:
        cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except BadInput as exc:
        sys.stderr.write(error_line(exc) + "\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dlgpu: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
