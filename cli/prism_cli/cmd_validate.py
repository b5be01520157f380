"""`prism validate FILE...`: check ExtractionJob and ExtractionCronJob manifests against the contract."""

from __future__ import annotations

import argparse
import sys

HELP = ("Check ExtractionJob and ExtractionCronJob manifests; print each problem as FILE: FIELD: MESSAGE. "
        "Exit 0 if all are valid.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML manifests (multi-document allowed)")
    parser.add_argument(
        "--for", dest="target", choices=("any", "cluster"), default="any",
        help="'cluster' also applies the rules of jobs the operator runs (a Qdrant url and a remote "
        "source). Default: the contract alone, which is what `prism run` checks.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def run(args: argparse.Namespace) -> int:
    from prism_api import SpecError, parse_job
    from prism_api.cron_job import CRON_KIND, parse_cron_job

    from .manifests import documents_of

    documents, bad = documents_of(args.files)
    for doc in documents:
        # A schedule's runs go to a cluster: its template is always checked with the cluster's rules.
        is_cron = isinstance(doc.body, dict) and doc.body.get("kind") == CRON_KIND
        try:
            parsed = parse_cron_job(doc.body) if is_cron else parse_job(doc.body, target=args.target)
        except SpecError as exc:
            bad += 1
            for err in exc.errors:
                print(f"{doc.where}: {err}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{doc.where}: {parsed.kind} {parsed.metadata.name} is valid")
    return 1 if bad else 0
