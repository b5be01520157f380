"""`python -m prism_pipeline run (--job ENCODED | --spec FILE|JSON) [--attempt N] [--progress-port 9090]`:
the RayJob entrypoint.

The operator passes the job with `--job` (its {"apiVersion", "kind", "metadata", "spec"} object,
encoded by spec.entrypoint.build_entrypoint) and the attempt number; `--spec` takes a YAML/JSON file
path or inline JSON (the whole object or a bare spec) for local tooling. Exit status 0 when the job
succeeded, 1 when it failed, 2 for a bad invocation or an invalid spec. The last line of stdout is
the verdict (spec.entrypoint.OutcomeReport), also served on the progress endpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys

from prism_api import progress_report as metrics
from prism_api.entrypoint import ATTEMPT_ARG, JOB_ARG, PROGRESS_PORT_ARG


def _attempt(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prism_pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one ExtractionJob on the Ray cluster in RAY_ADDRESS (or a local one)")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument(JOB_ARG, dest="job", metavar="ENCODED",
                        help="the ExtractionJob as the operator encodes it (base64url of zlib-compressed JSON)")
    source.add_argument("--spec", help="inline JSON, or a path to a YAML/JSON file")
    run.add_argument(ATTEMPT_ARG, dest="attempt", type=_attempt, default=1,
                     help="which attempt of the job this is, from 1 (labels the progress samples)")
    run.add_argument(PROGRESS_PORT_ARG, dest="progress_port", type=int, default=metrics.PROGRESS_PORT,
                     help=f"Prometheus progress endpoint port on the driver's node (default {metrics.PROGRESS_PORT})")
    run.add_argument("--state-dir", default=".prism", help="embedded Qdrant and failure ledger (local sinks)")
    run.add_argument("--linger-seconds", type=float, default=15.0,
                     help="keep serving the final progress this long after the job ends (for the operator)")
    run.add_argument("--no-progress-bar", action="store_true")
    run.add_argument("-v", "--verbose", action="store_true")
    return parser


def load_job(args: argparse.Namespace):
    """The JobArg that --job or --spec names; raises jobspec.JobArgError when it is refused."""
    from prism_pipeline.jobspec import load, load_encoded

    return load_encoded(args.job) if args.job is not None else load(args.spec)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prism_api.entrypoint import Outcome, OutcomeReport
    from prism_pipeline.jobspec import JobArgError
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
