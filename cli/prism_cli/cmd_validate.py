"""`prism validate FILE...`: check ExtractionJob, ExtractionCronJob and SearchService manifests against the contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("Check ExtractionJob, ExtractionCronJob and SearchService manifests; print each problem as FILE: FIELD: MESSAGE. "
        "Exit 0 if all are valid, 1 if one is not, 2 if an argument is no file (missing, a directory).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML manifests (multi-document allowed)")
    parser.add_argument(
        "--for", dest="target", choices=("any", "cluster", "local"), default="any",
        help="'cluster' also applies the rules of jobs the operator runs (a Qdrant url and a remote "
        "source). 'local' also checks what `prism run` would fail on here, before it starts Ray: plug-ins "
        "import, options have their types, models resolve, globs compile, the source exists (an include "
        "that matches nothing warns), the pools fit this machine, the job is not suspended. Default: the "
        "contract alone.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    from prism_api import SpecError, parse_job
    from prism_api.cron_job import CRON_KIND, parse_cron_job
    from prism_api.search_service import SEARCH_KIND, parse_search_service

    from .manifests import documents_of

    documents, bad = documents_of(args.files)
    # An argument that is no file (missing, a directory) is a usage error: exit 2, as for other flags.
    usage = sum(not Path(f).is_file() for f in args.files)
    local = args.target == "local"
    check_local = _local_checks() if local else None
    if local and check_local is None:
        return 2
    for doc in documents:
        # A schedule's runs go to a cluster: its template is always checked with the cluster's rules.
        kind = doc.body.get("kind") if isinstance(doc.body, dict) else None
        is_cron, is_job = kind == CRON_KIND, kind not in (CRON_KIND, SEARCH_KIND)
        try:
            if is_cron:
                parsed = parse_cron_job(doc.body)
            elif kind == SEARCH_KIND:  # a service runs on a cluster only: no local checks apply
                parsed = parse_search_service(doc.body)
            else:
                parsed = parse_job(doc.body, target="any" if local else args.target)
        except SpecError as exc:
            bad += 1
            for err in exc.errors:
                print(f"{doc.where}: {err}", file=sys.stderr)
            continue
        findings = check_local(parsed.spec) if check_local and is_job else []
        for finding in findings:
            print(f"{doc.where}: {finding}", file=sys.stderr)
        if any(not f.warning for f in findings):
            bad += 1
            continue
        if not args.quiet:
            print(f"{doc.where}: {parsed.kind} {parsed.metadata.name} is valid")
    return 2 if usage else 1 if bad else 0


def _local_checks():
    """prism_pipeline.preflight.check_local, or None (said on stderr) where the pipeline is not installed
    (the operator image's CLI)."""
    try:
        from prism_pipeline.preflight import check_local
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("prism_pipeline"):
            raise
        print("prism validate: --for local needs the pipeline (prism_pipeline), which this installation lacks; "
              "use --for cluster, or run it where `prism run` works", file=sys.stderr)
        return None
    return check_local
