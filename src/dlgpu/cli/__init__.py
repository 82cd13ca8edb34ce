"""The command line: one module per subcommand (parse, call one api function, hand the result to report)."""
