"""`prism validate FILE...`: check ExtractionJob manifests against the contract."""

from __future__ import annotations

import argparse
import sys

HELP = "Check ExtractionJob manifests; print each problem as FILE: FIELD: MESSAGE. Exit 0 if all are valid."


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

    from .manifests import documents_of

    documents, bad = documents_of(args.files)
    for doc in documents:
        try:
            job = parse_job(doc.body, target=args.target)
        except SpecError as exc:
            bad += 1
            for err in exc.errors:
                print(f"{doc.where}: {err}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{doc.where}: ExtractionJob {job.metadata.name} is valid")
    return 1 if bad else 0
