"""`prism operator`: run the ExtractionJob operator (kopf) in the foreground."""

from __future__ import annotations

import argparse
import sys

HELP = ("Run the ExtractionJob operator: watches ExtractionJobs and drives KubeRay RayClusters and RayJobs. "
        "Configured by PRISM_* environment variables (see the operator section of the README).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                        help="watch only this namespace (repeatable; globs allowed); default: all namespaces")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", metavar="URL",
                        help="liveness endpoint (default %(default)s); 'none' turns it off")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    import kopf

    from prism_operator.handlers import register
    from prism_operator.settings import ConfigError, OperatorConfig

    try:
        config = OperatorConfig.from_env()
    except ConfigError as exc:
        print(f"prism operator: {exc}", file=sys.stderr)
        return 2
    registry = kopf.OperatorRegistry()
    register(registry, config)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        registry=registry,
        # One replica (Deployment strategy Recreate): no peering objects needed.
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
    )
    return 0
