"""`python -m prism_pipeline run (--job ENCODED | --spec JSON) [--attempt N] [--progress-port 9090]`:
the RayJob entrypoint.

The operator writes the command with prism_api.entrypoint.Entrypoint (the job document, encoded,
and the attempt number); this parser registers the same options with its `add_arguments`. `--spec`
takes the same document as JSON (inline, or a path to a .json file) for local tooling; `prism run`
reads YAML manifests. Either way the document is an ExtractionJob object, validated by
prism_api.parse_job, the one job loader. Exit status 0 when the job succeeded, 1 when it failed, 2
for a bad invocation or an invalid job. The last line of stdout is the verdict
(prism_api.outcome.OutcomeReport), also served on the progress endpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from prism_api import ExtractionJob, SpecError, parse_job
from prism_api import entrypoint as ep


class JobArgError(ValueError):
    """The job named by --job or --spec is refused; the message names the option and the problem."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {ep.MODULE}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(ep.COMMAND, help="run one ExtractionJob on the Ray cluster in RAY_ADDRESS (or a local one)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(ep.JOB_ARG, dest="job", metavar="ENCODED",
                        help="the ExtractionJob as the operator encodes it (base64url of zlib-compressed JSON)")
    source.add_argument("--spec", help="the ExtractionJob as JSON: inline, or a path to a .json file")
    ep.add_arguments(run, job_required=False)
    run.add_argument("--state-dir", default=".prism", help="embedded Qdrant and failure ledger (local sinks)")
    run.add_argument("--linger-seconds", type=float, default=15.0,
                     help="keep serving the final progress this long after the job ends (for the operator)")
    run.add_argument("--no-progress-bar", action="store_true")
    run.add_argument("-v", "--verbose", action="store_true")
    return parser


def load_job(args: argparse.Namespace) -> ExtractionJob:
    """The ExtractionJob that --job or --spec names. Raises JobArgError."""
    if args.job is not None:
        where = ep.JOB_ARG
        try:
            document = ep.decode_document(args.job)
        except ep.EntrypointError as err:
            raise JobArgError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None
    else:
        where, text = "--spec", args.spec.strip()
        if not text.startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise JobArgError(f"--spec: {text[:200]!r} is neither inline JSON nor a readable file")
            where, text = str(path), path.read_text()
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            raise JobArgError(f"{where}: not valid JSON: {err}") from None
    try:
        return parse_job(document)
    except SpecError as err:
        raise JobArgError(f"{where}: invalid ExtractionJob:\n{err}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prism_api.outcome import Outcome, OutcomeReport
    from prism_pipeline.runner import execute, report_outcome, start_ray

    try:
        job = load_job(args)
    except JobArgError as err:
        print(f"prism_pipeline: {err}", file=sys.stderr)
        report_outcome(OutcomeReport(Outcome.INVALID_SPEC, str(err)))
        return 2
    try:
        start_ray(job.spec, verbose=args.verbose)
    except Exception as err:  # no cluster to run on: may be retried
        print(f"prism_pipeline: cannot connect to Ray: {type(err).__name__}: {err}", file=sys.stderr)
        report_outcome(OutcomeReport(Outcome.FAILED, f"cannot connect to Ray: {type(err).__name__}: {err}"))
        return 1
    return execute(job, state_dir=args.state_dir, progress_port=args.progress_port, attempt=args.attempt,
                   show_bar=not args.no_progress_bar, print_ledger=True, linger_s=args.linger_seconds,
                   print_outcome=True)


if __name__ == "__main__":
    sys.exit(main())
