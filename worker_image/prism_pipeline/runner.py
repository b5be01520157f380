"""Start-up around `run_job`, shared by `prism run` (local) and `python -m prism_pipeline run` (RayJob).

Local mode starts Ray on this machine advertising the synthetic `batch` resource (a stage asking
for a resource nobody advertises would wait forever); inside a RayJob, Ray is already running and
RAY_ADDRESS points at it. Everything after start-up is the same code path.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_api import ExtractionJob, ExtractionJobSpec
from prism_api.conventions import BATCH_RESOURCE
from prism_api.outcome import Outcome, OutcomeReport
from prism_api.progress_report import MAX_FAILURE_SAMPLES
from prism_pipeline.interrupts import Interrupts, say

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


QUIET_BACKEND_LOG_LEVEL = "fatal"  # Ray's C++ log level for a local run without -v
_started: float | None = None  # when start_ray began starting Ray (monotonic clock), until a run counts it


def start_ray(spec: ExtractionJobSpec, *, verbose: bool = False, started: float | None = None) -> bool:
    """Connect to the cluster named by RAY_ADDRESS, else start a local Ray with the batch resource.
    The next run's wall time counts from `started` (default: now), so it includes Ray's start-up.
    False when this process was already connected (its owner, not this run, stops Ray)."""
    global _started
    import ray

    if ray.is_initialized():
        return False
    _started = started if started is not None else time.monotonic()
    quiet = logging.WARNING if verbose else logging.ERROR
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=quiet, log_to_driver=True)
        return True
    cpus = max(os.cpu_count() or 1, cpus_needed(spec))
    # Ray's C++ side (this driver's core worker) writes its error lines to stderr, e.g. core_worker.cc's
    # note on every actor pool whose constructor arguments sit in the object store: noise on a
    # console. Quiet unless -v, or the user set RAY_BACKEND_LOG_LEVEL.
    # Reading that setting is itself logged (logging.cc, at start-up): start-up's stderr is held back
    # and shown only if ray.init fails.
    backend = None if verbose or "RAY_BACKEND_LOG_LEVEL" in os.environ else QUIET_BACKEND_LOG_LEVEL
    if backend:
        os.environ["RAY_BACKEND_LOG_LEVEL"] = backend
    try:
        with _stderr_held(bool(backend)):
            ray.init(num_cpus=cpus, resources={BATCH_RESOURCE: float(spec.cluster.batch_resource)},
                     include_dashboard=False, logging_level=quiet, log_to_driver=verbose)
    finally:
        if backend:  # the started processes have read it; this process's own children need not
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    quiet_ray_data(verbose)
    return True


@contextlib.contextmanager
def _stderr_held(hold: bool):
    """File descriptor 2 (C++ writes there too) goes to a temporary file for the block; its content
    is written to the real stderr only if the block raises."""
    if not hold:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def wall_since_start(run_wall_s: float) -> float:
    """A run's wall time counted from when start_ray began (Ray's start-up included), for the first
    run after it; the run's own time otherwise (Ray was up already)."""
    global _started
    began, _started = _started, None
    return run_wall_s if began is None else max(run_wall_s, time.monotonic() - began)


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data logs each execution's plan at INFO on the console; the progress bar replaces it."""
    import ray.data  # noqa: F401  (configures its loggers on import; adjust them afterwards)

    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)


# Exit statuses of a run (prism run and the RayJob entrypoint): 128 + the signal that stopped it.
EXIT_OK, EXIT_FAILED = 0, 1


def execute(job: ExtractionJob, *, state_dir: str | Path = ".prism", progress_port: int | None = None,
            show_bar: bool = True, print_ledger: bool = False, linger_s: float = 0.0, attempt: int = 1,
            print_outcome: bool = False, local: bool = False, verbose: bool = False) -> int:
    """Run the job and print its summary; 0 when it succeeded, 1 when it failed, 128 + the signal's
    number when a signal stopped it (130 SIGINT, 143 SIGTERM; see run_locally).

    The verdict (prism_api.outcome.Outcome) is recorded on the progress actor, served there for
    `linger_s` (success or failure), and with `print_outcome` printed as the last line of stdout.
    `local` (prism run): an unexpected error prints one line (its traceback only with `verbose`),
    and a failure ledger that cannot be written makes the exit status 1 even when the job succeeded.
    The RayJob entrypoint keeps the traceback in the driver log and exits by the verdict alone.
    """
    from prism_pipeline.console import ProgressBar

    bar = ProgressBar(job.metadata.name) if show_bar else None
    actors: list = []

    def attach(actor) -> None:
        actors.append(actor)
        if bar:
            bar.attach(actor)

    ran = _run(job, bar, attach, state_dir=state_dir, progress_port=progress_port, print_ledger=print_ledger,
               attempt=attempt, local=local, show_traceback=verbose or not local)
    if actors and ran.signum is None:  # after a signal Ray may be going down: no waiting on an actor
        record_outcome(actors[0], ran.report)
        if linger_s > 0:
            # Keep the progress endpoint up for the operator's next scrape of the final totals and verdict.
            time.sleep(linger_s)
    if print_outcome:
        report_outcome(ran.report)
    if ran.signum is not None:
        return 128 + ran.signum
    if ran.ledger_error and local:
        return EXIT_FAILED
    return EXIT_OK if ran.report.outcome is Outcome.SUCCEEDED else EXIT_FAILED


@dataclass(frozen=True)
class _Ran:
    report: OutcomeReport
    signum: int | None = None  # the signal that stopped the run
    ledger_error: str = ""     # why the failure ledger could not be written


def _run(job: ExtractionJob, bar, attach, *, state_dir: str | Path, progress_port: int | None, print_ledger: bool,
         attempt: int, local: bool = False, show_traceback: bool = True) -> _Ran:
    from prism_pipeline.console import summary
    from prism_pipeline.pipeline import JobError, Stopped, run_job

    name = job.metadata.name
    try:
        result = run_job(name, job.spec, state_dir=state_dir, progress_port=progress_port, on_progress=attach,
                         namespace=job.metadata.namespace or "", attempt=attempt, deadline=local)
        result.wall_s = wall_since_start(result.wall_s)
    except JobError as err:
        if bar:
            bar.close()
        print(f"prism: job {name} failed: {err}", file=sys.stderr)
        return _Ran(OutcomeReport(Outcome.FAILED, str(err)))
    except Stopped as stop:  # before any file went through: nothing to summarize
        if bar:
            bar.close()
        print(f"prism: job {name} {stop.message} before it processed any file", file=sys.stderr)
        return _Ran(OutcomeReport(Outcome.FAILED, stop.message), stop.signum)
    except Exception as err:  # a bug or a lost cluster: still a verdict, with the traceback in the log
        if bar:
            bar.close()
        if show_traceback:
            traceback.print_exc()
        first = " ".join(str(err).split())[:500]
        print(f"prism: job {name} failed: {type(err).__name__}: {first}", file=sys.stderr)
        if not show_traceback:
            print("prism: this is unexpected; rerun with -v for the traceback", file=sys.stderr)
        return _Ran(OutcomeReport(Outcome.FAILED, f"{type(err).__name__}: {err}"))
    if bar:
        bar.close()
    # The ledger first: the verdict printed below is final, and a reader may act on it at once.
    ledger = Path(state_dir) / "jobs" / name / "failures.jsonl"
    ledger_error = ""
    try:
        result.tracker.write(ledger)
    except OSError as err:
        ledger_error = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
    print(summary(result))
    if result.tracker.totals.files_failed and not ledger_error:
        print(f"\n  Failure ledger: {ledger}")
    if ledger_error:
        verdict = "succeeded" if result.ok else "failed"
        print(f"prism: job {name} {verdict} but its failure ledger could not be written to {ledger}: "
              f"{ledger_error}; its points are in collection {result.collection!r} (the summary above lists "
              "the first failures); fix the path or pass --state-dir", file=sys.stderr)
    if print_ledger:
        for f in result.tracker.iter_failures():
            print(f.to_line())
    if result.stopped is not None:
        print(f"prism: job {name} {result.stopped.message}", file=sys.stderr)
    if not job.spec.sink.qdrant.url:
        from prism_pipeline.sink.embedded import close_embedded

        close_embedded(state_dir)
    report = OutcomeReport(result.outcome, result.message, result.tracker.totals.files_failed,
                           tuple(result.tracker.samples[:MAX_FAILURE_SAMPLES]))
    return _Ran(report, result.stopped.signum if result.stopped else None, ledger_error)


def run_locally(job: ExtractionJob, *, verbose: bool = False, started: float | None = None,
                **options: Any) -> int:
    """`prism run`: start Ray on this machine, run the job (execute), and always stop Ray again.

    The first SIGINT (Ctrl-C) or SIGTERM stops the run where it is: the files whose points are written
    stay recorded, the summary and the failure ledger of what finished are printed and written, and
    the exit status is 130 (SIGINT) or 143 (SIGTERM). A second signal while that happens exits at
    once with the same status, after killing this run's Ray processes (best effort)."""
    from prism_pipeline.pipeline import Stopped

    interrupts = Interrupts("prism", _stop_run)
    interrupts.install()  # ray.init replaces the SIGTERM handler: installed again once Ray is up
    own_ray = True  # stop Ray afterwards unless this process was already connected (a test's session)
    try:
        try:
            own_ray = start_ray(job.spec, verbose=verbose, started=started)  # wall time counts from `started`
        except Exception as err:  # Ray cannot start here (ports, /tmp, shared memory): one line, not a traceback
            if verbose:
                traceback.print_exc()
            first = " ".join(str(err).split())[:500]
            print(f"prism: cannot start Ray on this machine: {type(err).__name__}: {first}"
                  + ("" if verbose else "; rerun with -v for the traceback"), file=sys.stderr)
            return EXIT_FAILED
        interrupts.install()
        return execute(job, local=True, verbose=verbose, **options)
    except Stopped as stop:  # while Ray started, or after the job's own account
        print(f"prism: job {job.metadata.name} {stop.message}", file=sys.stderr)
        return 128 + stop.signum if stop.signum else EXIT_FAILED
    finally:
        interrupts.shutting_down = True
        if own_ray:
            stop_ray()
        interrupts.restore()


def _stop_run(signum: int) -> None:
    """The first SIGINT/SIGTERM of `prism run`: pipeline.Stopped in the main thread (the pipeline turns it
    into a summary of what finished)."""
    from prism_pipeline.pipeline import Stopped

    say(f"prism: {signal.Signals(signum).name}: stopping; the summary of what finished follows "
        "(press Ctrl-C again to quit at once)\n")
    raise Stopped(f"interrupted by {signal.Signals(signum).name}", signum)


def stop_ray() -> None:
    """Disconnect from Ray; the local Ray that ray.init started (gcs_server, raylet, workers) stops
    with it. Errors on the way out are not the job's."""
    import ray

    with contextlib.suppress(Exception):
        from ray._private import auto_init_hook

        auto_init_hook.enable_auto_connect = False  # a thread still calling into Ray must not start a new one
    with contextlib.suppress(Exception):
        if ray.is_initialized():
            ray.shutdown()


def _kill_ray() -> None:
    """Kill this process's children and theirs (the local Ray: gcs_server, raylet, its agents and
    workers) at once, without waiting: SIGKILL to the whole tree, collected before any dies (a
    killed raylet's children would be re-parented out of reach). Where /proc is missing, Ray's own
    bookkeeping of the processes it started."""
    tree = _descendants(os.getpid())
    for pid in tree:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if tree:
        return
    with contextlib.suppress(Exception):
        from ray._private import worker

        node = worker._global_node
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=False, wait=False)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


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
