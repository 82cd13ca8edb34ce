"""One module per subcommand, each exporting ``add_parser(subparsers)`` and ``run(args) -> int``: parse the flags
into typed arguments, call one api function, hand the result to ``report``."""
