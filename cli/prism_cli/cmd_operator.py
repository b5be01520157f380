"""`prism operator`: run the ExtractionJob operator (kopf) in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    problem = _no_credentials()
    if problem:
        print(f"prism operator: {problem}", file=sys.stderr)
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


def _no_credentials() -> str | None:
    """Why the operator cannot reach a cluster, checked once before kopf starts (kopf would retry the
    login forever, with a traceback each time); None when the credentials load."""
    from prism_operator.k8s_api import load_client_config

    fix = ("set KUBECONFIG=/path/to/kubeconfig, put a kubeconfig at ~/.kube/config, or run it in-cluster "
           "(a pod with a service account)")
    where = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        load_client_config(1).close()
    except Exception as err:
        if type(err).__name__ != "ConfigException":  # a kubeconfig that is not one (YAML, missing keys)
            first = " ".join(str(err).split())[:200]
            return f"cannot load the cluster credentials in {where}: {type(err).__name__}: {first}; {fix}"
        if "No configuration found" in str(err) or not Path(os.path.expanduser(where.split(os.pathsep)[0])).exists():
            return f"no cluster credentials found (not in-cluster, no kubeconfig at {where}); {fix}"
        return f"cannot load the cluster credentials in {where}: {err}; {fix}"
    return None
