"""Start-up around `run_job`, shared by `prism run` (local) and `python -m prism_pipeline run` (RayJob).

Local mode starts Ray on this machine advertising the synthetic `batch` resource (a stage asking
for a resource nobody advertises would wait forever); inside a RayJob, Ray is already running and
RAY_ADDRESS points at it. Everything after start-up is the same code path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from prism_pipeline.jobspec import JobArg
from prism_pipeline.spec import ExtractionJobSpec

log = logging.getLogger("prism")


def cpus_needed(spec: ExtractionJobSpec) -> int:
    """Logical CPUs for every stage's minimum pool plus a read task and the sink, so a laptop with
    fewer cores still runs every stage (actors would otherwise wait for CPUs held by other stages)."""
    from prism_pipeline.extractors import build_all

    per_file = {ex.name for ex in build_all(spec.extractors) if ex.per_file}
    pools = sum(e.resources.cpu * e.concurrency.min for e in spec.extractors if e.name not in per_file)
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
    ray.init(num_cpus=cpus, resources={"batch": float(spec.cluster.batch_resource)},
             include_dashboard=False, logging_level=quiet, log_to_driver=verbose)
    quiet_ray_data(verbose)


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data logs each execution's plan at INFO on the console; the progress bar replaces it."""
    import ray.data  # noqa: F401  (configures its loggers on import; adjust them afterwards)

    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)


def execute(job: JobArg, *, state_dir: str | Path = ".prism", progress_port: int | None = None,
            show_bar: bool = True, print_ledger: bool = False, linger_s: float = 0.0) -> int:
    """Run the job and print its summary; 0 when it succeeded, 1 when it failed."""
    from prism_pipeline.console import ProgressBar, summary
    from prism_pipeline.pipeline import JobError, run_job

    bar = ProgressBar(job.name) if show_bar else None
    try:
        result = run_job(job.name, job.spec, state_dir=state_dir, progress_port=progress_port,
                         on_progress=bar.attach if bar else None)
    except JobError as err:
        if bar:
            bar.close()
        print(f"prism: job {job.name} failed: {err}", file=sys.stderr)
        return 1
    if bar:
        bar.close()
    print(summary(result))
    ledger = Path(state_dir) / "jobs" / job.name / "failures.jsonl"
    result.tracker.write(ledger)
    if result.failures:
        print(f"\n  Failure ledger: {ledger}")
    if print_ledger:
        for f in result.failures:
            print("PRISM_FAILURE " + json.dumps(f.__dict__))
    if not job.spec.sink.qdrant.url:
        from prism_pipeline.sink.embedded import close_embedded

        close_embedded(state_dir)
    if linger_s > 0:
        # Keep the progress endpoint up for the operator's next scrape of the final totals.
        time.sleep(linger_s)
    return 0 if result.ok else 1
