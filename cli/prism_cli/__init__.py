"""The `prism` command line: each subcommand imports only the side it needs."""
