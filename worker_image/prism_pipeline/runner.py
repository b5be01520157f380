"""Start-up around `run_job`, shared by `prism run` (local) and `python -m prism_pipeline run` (RayJob).

Local mode starts Ray on this machine advertising the synthetic `batch` resource (a stage asking
for a resource nobody advertises would wait forever); inside a RayJob, Ray is already running and
RAY_ADDRESS points at it. Everything after start-up is the same code path.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path

from prism_api import ExtractionJob, ExtractionJobSpec
from prism_api.conventions import BATCH_RESOURCE
from prism_api.outcome import Outcome, OutcomeReport
from prism_api.progress_report import MAX_FAILURE_SAMPLES

log = logging.getLogger("prism")


def cpus_needed(spec: ExtractionJobSpec) -> int:
    """Logical CPUs for every stage's minimum pool plus a read task and the sink, so a laptop with
    fewer cores still runs every stage (actors would otherwise wait for CPUs held by other stages)."""
    from prism_pipeline.extractors import extractor_class

    # Per-file extractors run inside read tasks, not in pools. Only the class says which: reading
    # it constructs nothing (no model is resolved just to size the local cluster).
    pools = sum(e.resources.cpu * e.concurrency.min for i, e in enumerate(spec.extractors)
                if not extractor_class(e, f"spec.extractors[{i}]").per_file)
    return math.ceil(pools + 1 + 0.5)


def start_ray(spec: ExtractionJobSpec, *, verbose: bool = False) -> None:
    """Connect to the cluster named by RAY_ADDRESS, else start a local Ray with the batch resource."""
    import ray

    if ray.is_initialized():
        return
    quiet = logging.WARNING if verbose else logging.ERROR
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=quiet, log_to_driver=True)
        return
    cpus = max(os.cpu_count() or 1, cpus_needed(spec))
    ray.init(num_cpus=cpus, resources={BATCH_RESOURCE: float(spec.cluster.batch_resource)},
             include_dashboard=False, logging_level=quiet, log_to_driver=verbose)
    quiet_ray_data(verbose)


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data logs each execution's plan at INFO on the console; the progress bar replaces it."""
    import ray.data  # noqa: F401  (configures its loggers on import; adjust them afterwards)

    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)


def execute(job: ExtractionJob, *, state_dir: str | Path = ".prism", progress_port: int | None = None,
            show_bar: bool = True, print_ledger: bool = False, linger_s: float = 0.0, attempt: int = 1,
            print_outcome: bool = False) -> int:
    """Run the job and print its summary; 0 when it succeeded, 1 when it failed.

    The verdict (prism_api.outcome.Outcome) is recorded on the progress actor, served there for
    `linger_s` (success or failure), and with `print_outcome` printed as the last line of stdout.
    """
    from prism_pipeline.console import ProgressBar

    bar = ProgressBar(job.metadata.name) if show_bar else None
    actors: list = []

    def attach(actor) -> None:
        actors.append(actor)
        if bar:
            bar.attach(actor)

    report = _run(job, bar, attach, state_dir=state_dir, progress_port=progress_port, print_ledger=print_ledger,
                  attempt=attempt)
    if actors:
        record_outcome(actors[0], report)
        if linger_s > 0:
            # Keep the progress endpoint up for the operator's next scrape of the final totals and verdict.
            time.sleep(linger_s)
    if print_outcome:
        report_outcome(report)
    return 0 if report.outcome is Outcome.SUCCEEDED else 1


def _run(job: ExtractionJob, bar, attach, *, state_dir: str | Path, progress_port: int | None, print_ledger: bool,
         attempt: int) -> OutcomeReport:
    from prism_pipeline.console import summary
    from prism_pipeline.pipeline import JobError, run_job

    name = job.metadata.name
    try:
        result = run_job(name, job.spec, state_dir=state_dir, progress_port=progress_port, on_progress=attach,
                         namespace=job.metadata.namespace or "", attempt=attempt)
    except JobError as err:
        if bar:
            bar.close()
        print(f"prism: job {name} failed: {err}", file=sys.stderr)
        return OutcomeReport(Outcome.FAILED, str(err))
    except Exception as err:  # a bug or a lost cluster: still a verdict, with the traceback in the log
        if bar:
            bar.close()
        traceback.print_exc()
        print(f"prism: job {name} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return OutcomeReport(Outcome.FAILED, f"{type(err).__name__}: {err}")
    if bar:
        bar.close()
    print(summary(result))
    ledger = Path(state_dir) / "jobs" / name / "failures.jsonl"
    result.tracker.write(ledger)
    if result.failures:
        print(f"\n  Failure ledger: {ledger}")
    if print_ledger:
        for f in result.failures:
            print(f.to_line())
    if not job.spec.sink.qdrant.url:
        from prism_pipeline.sink.embedded import close_embedded

        close_embedded(state_dir)
    return OutcomeReport(result.outcome, result.message, len(result.failures),
                         tuple(result.failures[:MAX_FAILURE_SAMPLES]))


def record_outcome(actor, report: OutcomeReport) -> None:
    """Serve the verdict on the progress endpoint (best effort: the actor may be what failed)."""
    import ray

    try:
        ray.get(actor.set_outcome.remote(report.outcome.value, report.message), timeout=10)
    except Exception as err:  # the verdict still reaches the log
        log.warning("cannot record the outcome on the progress actor: %s", err)


def report_outcome(report: OutcomeReport) -> None:
    """Print the verdict as the last line of the driver's output (prism_api.outcome.OutcomeReport):
    Ray keeps the log's tail in the job's message, which KubeRay copies into the RayJob's status."""
    sys.stderr.flush()
    print(report.to_line(), flush=True)
