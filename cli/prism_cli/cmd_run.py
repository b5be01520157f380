"""`prism run job.yaml`: run an ExtractionJob on this machine (local Ray, embedded Qdrant)."""

from __future__ import annotations

import argparse
import sys

from .argtypes import PORT

HELP = ("Run an ExtractionJob manifest locally: Ray on this machine, the source path on disk, embedded "
        "Qdrant under .prism/. Shows a progress bar and a summary; exit 0 if the job succeeded.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="ExtractionJob manifest (YAML, one document)")
    parser.add_argument("--state-dir", default=".prism",
                        help="where the embedded Qdrant store and failure ledgers live (default .prism)")
    parser.add_argument("--progress-port", type=PORT, default=None,
                        help="also serve Prometheus progress on this port, 1-65535 (default: off)")
    parser.add_argument("--no-progress-bar", action="store_true", help="print only the summary")
    parser.add_argument("--delete-missing", action="store_true",
                        help="remove from the collection the files it records that the source no longer lists "
                        "(deleted, moved, renamed; sets spec.deletedFiles Delete; an empty listing deletes nothing)")
    parser.add_argument("--full", action="store_true",
                        help="process every file even if already written (ignore spec.incremental)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's own logs")


def run(args: argparse.Namespace) -> int:
    import logging

    from prism_api import SpecError, parse_job

    from .manifests import ManifestError, read_documents

    try:
        docs = read_documents(args.file)
    except ManifestError as exc:
        print(f"prism run: {exc}", file=sys.stderr)
        return 2
    if len(docs) != 1:
        print(f"prism run: {args.file}: holds {len(docs)} documents; give a file with one ExtractionJob",
              file=sys.stderr)
        return 2
    try:
        job = parse_job(docs[0].body)
    except SpecError as exc:
        for err in exc.errors:
            print(f"{docs[0].where}: {err}", file=sys.stderr)
        return 2
    if args.delete_missing:
        job = job.model_copy(update={"spec": job.spec.model_copy(update={"deleted_files": "Delete"})})
    if args.full:
        job = job.model_copy(update={"spec": job.spec.model_copy(update={"incremental": False})})
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from prism_pipeline.runner import run_locally
    except KeyboardInterrupt:  # Ctrl-C while the pipeline loads, before run_locally handles signals
        print("prism run: interrupted before the job started", file=sys.stderr)
        return 130
    # What the run would fail on here, before Ray starts (the same checks as `prism validate --for local`).
    from prism_pipeline.preflight import check_local

    findings = check_local(job.spec)
    for finding in findings:
        print(f"{docs[0].where}: {finding}", file=sys.stderr)
    if any(not f.warning for f in findings):
        return 2
    # Exit status: 0 succeeded, 1 failed (or its failure ledger could not be written), 2 a user error
    # (the manifest, the flags), 130 Ctrl-C / 143 SIGTERM (the summary of what finished is printed).
    from .main import STARTED

    return run_locally(job, verbose=args.verbose, state_dir=args.state_dir, started=STARTED,
                       progress_port=args.progress_port, show_bar=not args.no_progress_bar)
