"""`python -m prism_pipeline run --spec FILE|JSON [--progress-port 9090]`: the RayJob entrypoint.

The operator passes the job as JSON ({"apiVersion", "kind", "metadata", "spec"}); a YAML/JSON file
path and a bare spec work too. Exit status 0 when the job succeeded, 1 when it failed, 2 for a
bad invocation or an invalid spec.
"""

from __future__ import annotations

import argparse
import logging
import sys

from prism_pipeline.spec import metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prism_pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one ExtractionJob on the Ray cluster in RAY_ADDRESS (or a local one)")
    run.add_argument("--spec", required=True, help="inline JSON, or a path to a YAML/JSON file")
    run.add_argument("--progress-port", type=int, default=metrics.PROGRESS_PORT,
                     help=f"Prometheus progress endpoint port on the driver's node (default {metrics.PROGRESS_PORT})")
    run.add_argument("--state-dir", default=".prism", help="embedded Qdrant and failure ledger (local sinks)")
    run.add_argument("--linger-seconds", type=float, default=15.0,
                     help="keep serving the final progress this long after the job ends (for the operator)")
    run.add_argument("--no-progress-bar", action="store_true")
    run.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prism_pipeline.jobspec import JobArgError, load
    from prism_pipeline.local import execute, start_ray

    try:
        job = load(args.spec)
    except JobArgError as err:
        print(f"prism_pipeline: {err}", file=sys.stderr)
        return 2
    start_ray(job.spec, verbose=args.verbose)
    return execute(job, state_dir=args.state_dir, progress_port=args.progress_port,
                   show_bar=not args.no_progress_bar, print_ledger=True, linger_s=args.linger_seconds)


if __name__ == "__main__":
    sys.exit(main())
