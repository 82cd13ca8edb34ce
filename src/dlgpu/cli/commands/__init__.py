"""One module per subcommand, each exporting ``add_parser(subparsers)``; the parser's ``run`` does the work."""
