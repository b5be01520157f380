"""`prism`: one console script, one module per subcommand.

Each subcommand module (`cmd_<name>.py`) defines `HELP`, `add_arguments(parser)` and `run(args) -> int`,
and imports its side (operator or pipeline) only inside `run`, so the operator image never needs Ray
and the worker image never needs kopf. A subcommand whose module is absent is not offered.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
import time

STARTED = time.monotonic()  # about when the process started: `prism run` reports its wall time from here

DISTRIBUTION = "prism-extract"
SUBCOMMANDS = ("run", "search", "serve", "failed", "collections", "validate", "render", "crd", "operator")


def _load(name: str):
    try:
        return importlib.import_module(f"prism_cli.cmd_{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"prism_cli.cmd_{name}":
            return None
        raise


def version() -> str:
    """The installed distribution's version (pyproject's project name)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prism",
        description="Prism: multimodal ML extraction on Ray. Run ExtractionJobs locally, validate and "
        "render them for Kubernetes, or run the operator.",
    )
    parser.add_argument("--version", action="version", version=f"prism {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
