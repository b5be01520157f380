"""One ExtractionJob as one streaming Ray Data pipeline (docs/design.md §4):

    listing thread (driver): list a page -> look up its records -> skip the unchanged -> feed blocks
      -> read+decode once per file (tasks, many small files per task)
      -> extractor 1 -> ... -> extractor N   (chained actor stages over the one stream)
      -> points (+ upsert in server mode) -> driver: file outcomes, embedded upserts, file records

The listing streams (lister.py, feed.py): the first files decode while the rest are listed, and a
file whose listing fingerprint matches its record is skipped without a byte read. The driver
consumes the stream's compact outcome rows, which gives backpressure for free and makes the driver
the one authoritative account of every file (ledger.FileTracker), in memory bounded by the files in
flight. Nothing is materialized and no lazy dataset is branched.

`run_job` reads top to bottom as the job's steps: _build_extractors, _first_page, _open_sink,
_start_progress, _run_pipeline (the Lister starts; build_dataset once a file needs work, then
_drain: _batches feeds the stream, _account counts each batch, _Records records finished files),
_verdict. The sink is used only through its methods (prism_pipeline.sink.Sink).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from prism_api import ExtractionJobSpec
from prism_api.conventions import BATCH_RESOURCE
from prism_api.fields import quantity_value
from prism_api.outcome import Outcome
from prism_pipeline import incremental
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, ExtractorError, build_all
from prism_pipeline.ledger import Failure, FileTracker, Written
from prism_pipeline.lister import Lister
from prism_pipeline.sink import CollectionError, Sink, StoreBusyError
from prism_pipeline.sources import Listing, SourceError, iter_source

log = logging.getLogger("prism.pipeline")

# Every stage asks for this much of the synthetic "batch" resource: a token, not a quota. It pins
# stages to nodes that advertise `batch` (Prism workers); CPUs and GPUs do the actual counting.
BATCH_SHARE = 0.001
READ_MEMORY = 256 * 1024**2
RECORD_FLUSH_S = 2.0     # how often finished files are recorded for incremental runs
RECORD_FLUSH_FILES = 256
STREAM_BUFFER = 4        # batches the feeder thread may read ahead of the driver


class JobError(Exception):
    """The job cannot start or cannot go on; the message says why and what to do."""


class Stopped(BaseException):  # noqa: N818 - like KeyboardInterrupt: not an error, and no `except Exception` takes it
    """The run was stopped before its end: by a signal (SIGINT, SIGTERM: `signum`), which `prism run`
    raises from its handler, or by spec.activeDeadlineSeconds (`signum` None). Inside the stream,
    run_job turns it into a result of what finished (JobResult.stopped); before the stream it
    propagates."""

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.message, self.signum = message, signum


@dataclass(frozen=True)
class Deadline:
    """spec.activeDeadlineSeconds as a moment on the monotonic clock."""

    at: float
    seconds: int

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise Stopped(f"ran longer than spec.activeDeadlineSeconds={self.seconds}")


@dataclass
class JobResult:
    name: str
    ok: bool
    message: str
    tracker: FileTracker
    wall_s: float
    collection: str
    points_in_collection: int | None = None
    extractors: list[str] = field(default_factory=list)
    stopped: Stopped | None = None  # stopped before the end (a signal, the deadline): the files that finished
    files_removed: int = 0  # spec.deletedFiles Delete: recorded files no longer listed, points deleted

    @property
    def failures(self) -> list[Failure]:
        """Every failed file (read back from the spilled ledger: for small jobs and tests; large
        ones use tracker.samples, tracker.iter_failures and tracker.totals.files_failed)."""
        return self.tracker.failures

    @property
    def outcome(self) -> Outcome:
        """The verdict on a pipeline that ran to its end: ok is decided by maxFailedFileRatio alone.
        A stopped run failed (Failed: running it again resumes after the files it recorded)."""
        if self.stopped is not None:
            return Outcome.FAILED
        return Outcome.SUCCEEDED if self.ok else Outcome.TOO_MANY_FAILED_FILES


def run_job(name: str, spec: ExtractionJobSpec, *, state_dir: str | Path = ".prism",
            progress_port: int | None = None, on_progress: Callable[[Any], None] | None = None,
            namespace: str = "", attempt: int = 1, deadline: bool = False) -> JobResult:
    """Run the job on the Ray cluster this process is connected to. Raises JobError when it
    cannot start or cannot go on (its outcome is Outcome.FAILED, recorded on the progress actor when
    there is one); otherwise returns the result (ok decided by failurePolicy.maxFailedFileRatio,
    its outcome recorded on the progress actor with the final totals).

    A run stopped while the stream flows (Stopped: a signal, or with `deadline` (prism run; on a
    cluster the operator enforces it) spec.activeDeadlineSeconds counted from here) returns the result
    of what finished, `stopped` set; the files whose points were written stay recorded for the next
    incremental run. Stopped before the stream propagates."""
    started = time.monotonic()
    active = spec.active_deadline_seconds if deadline else None
    due = Deadline(started + active, active) if active else None
    extractors = _build_extractors(spec)
    _check_served(extractors)
    first, pages = _first_page(spec)
    with _open_sink(spec, extractors, state_dir) as sink:
        progress = _start_progress(name, 0, progress_port, namespace, attempt, on_progress)
        tracker = FileTracker()
        lister = Lister(spec.source.uri, chain([first], pages), incremental.plan(spec, extractors), sink, tracker,
                        progress, keep_uris=spec.deleted_files == "Delete")
        try:
            stopped = _run_pipeline(spec, extractors, lister, sink, progress, tracker, due)
        finally:
            lister.close()
        removed = _delete_missing(spec, sink, lister, progress, tracker) if stopped is None else 0
        result = _verdict(name, spec, extractors, tracker, sink, started, removed, stopped)
    # After a signal, Ray may be going down with this process: the verdict is sent, not waited for.
    _finish(progress, tracker, result, wait=stopped is None or stopped.signum is None)
    return result


# -- before the stream -------------------------------------------------------------------------------

def _build_extractors(spec: ExtractionJobSpec) -> list[Extractor]:
    try:
        return build_all(spec.extractors)
    except ExtractorError as err:
        raise JobError(str(err)) from err


def _check_served(extractors: list[Extractor]) -> None:
    """Serve-backed extractors (spec.extractors[].serve): their deployments exist on this Ray cluster
    and serve the same kind and model version, checked before anything is listed or written."""
    if not any(ex.spec.serve is not None for ex in extractors):
        return
    from prism_pipeline.serve_backed import ServeBackedError, check_all

    try:
        check_all(extractors)
    except ServeBackedError as err:
        raise JobError(str(err)) from err


def _first_page(spec: ExtractionJobSpec) -> tuple[Listing, Iterator[Listing]]:
    """The listing's first page, read before anything else is done (a source that cannot be listed
    at all fails the job before the sink is touched), and the iterator over the rest."""
    pages = iter_source(spec.source)
    try:
        return next(pages), pages
    except SourceError as err:
        raise JobError(str(err)) from err


def _open_sink(spec: ExtractionJobSpec, extractors: list[Extractor], state_dir: str | Path) -> Sink:
    """The job's sink with its collections ready: created, or checked to fit this job's vectors."""
    qdrant = spec.sink.qdrant
    sink = None
    try:
        sink = Sink(qdrant, extractors, state_dir)
        sink.prepare()
        return sink
    except Exception as err:
        if sink is not None:
            sink.close()
        if isinstance(err, CollectionError | StoreBusyError):
            raise JobError(str(err)) from err
        # server unreachable, auth refused, ...
        raise JobError(f"spec.sink.qdrant: cannot prepare collection {qdrant.collection!r}: "
                       f"{type(err).__name__}: {err}") from err


def _start_progress(name: str, files_total: int, progress_port: int | None, namespace: str, attempt: int,
                    on_progress: Callable[[Any], None] | None) -> Any:
    """The progress actor (and its endpoint when a port is given), handed to `on_progress`."""
    from prism_pipeline.progress_actor import start_progress_actor

    progress, port = start_progress_actor(name, files_total, progress_port, namespace=namespace, attempt=attempt)
    if port is not None:
        log.info("progress: http://0.0.0.0:%s/metrics", port)
    if on_progress:
        on_progress(progress)
    return progress


# -- the stream ---------------------------------------------------------------------------------------

def _run_pipeline(spec: ExtractionJobSpec, extractors: list[Extractor], lister: Lister, sink: Sink,
                  progress: Any, tracker: FileTracker, deadline: Deadline | None = None) -> Stopped | None:
    """Stream the listed files through the stages and the sink; afterwards every file has an outcome.
    The stream is built once the listing finds the first file that needs work: when every listed file
    is unchanged, no pipeline starts and no model loads. A failure that stops the job is recorded on
    the progress actor (Failed) and raised as JobError. Stopped (a signal, the deadline) ends the
    stream early and is returned: the files that did not finish have no outcome, and are not failures."""
    try:
        if deadline:
            deadline.check()
        lister.start()
        while not lister.feeding.wait(0.5) and not lister.done.is_set():
            if deadline:
                deadline.check()
        if lister.feeding.is_set():
            _warn_without_batch_nodes()
            ds = build_dataset(spec, extractors, lister.queue, sink, progress)
            _drain(ds, spec, sink, tracker, progress, incremental.run_key(spec, extractors), deadline)
        else:
            log.info("every listed file is unchanged since the last run: nothing to extract, no pipeline started")
        lister.join()
        if lister.error is not None:
            raise JobError(str(lister.error))
        tracker.close()
    except Stopped as stop:
        return stop
    except JobError as err:
        _finish_failed(progress, tracker, err)
        raise
    except Exception as err:
        failed = _pipeline_failed(err, tracker)
        _finish_failed(progress, tracker, failed)
        raise failed from err
    return None


def _warn_without_batch_nodes() -> None:
    import ray

    if BATCH_RESOURCE not in ray.cluster_resources():
        log.warning("no Ray node advertises the 'batch' resource yet: stages wait for a Prism worker "
                    "(cluster.batchResource); the job fails after stallTimeoutSeconds if none comes")


def _pipeline_failed(err: Exception, tracker: FileTracker) -> JobError:
    """A stage that raised past its own handling (the sink refusing writes after its retries, a
    worker lost for good): the job cannot go on. Ray's messages repeat the traceback; the last lines
    say what happened. An extractor stage that cannot go on says so in one line (extract_stage)."""
    from prism_pipeline.extract_stage import stage_failure

    failure = stage_failure(err)
    if failure is not None:
        return JobError(failure)
    first = "\n".join(str(err).strip().splitlines()[-6:])
    return JobError(f"pipeline failed after {tracker.totals.files_finished}/{tracker.files_total} files: "
                    f"{type(err).__name__}: {first}")


def build_dataset(spec: ExtractionJobSpec, extractors: list[Extractor], queue: Any, sink: Sink, progress: Any):
    """The job's one lazy stream: the feed's blocks of files ({uri, size, prev_hash}: the content hash
    a read task may skip a file on) -> read+decode -> each extractor's stage -> the sink's stage."""
    from prism_pipeline import feed

    ds = feed.dataset(queue)
    # Ray's own guard: no block moving anywhere for this long fails the execution (default 1800 s).
    ds.context.execution_no_progress_timeout_s = float(spec.stall_timeout_seconds)
    ds.context.enable_progress_bars = False
    ds = _read_stage(ds, spec, extractors, progress)
    for i, ex in enumerate(extractors):
        if not ex.per_file:  # per-file extractors run inside the read task
            ds = _extractor_stage(ds, ex, progress, f"spec.extractors[{i}]")
    return sink.stage(ds, BATCH_SHARE)


def _read_stage(ds, spec: ExtractionJobSpec, extractors: list[Extractor], progress: Any):
    from prism_pipeline.read_stage import read_decode

    per_file = [ex for ex in extractors if ex.per_file]
    # The memory hint is a floor for one file's decoded items (frames add up). Differing from the
    # extractor stages' arguments, it also keeps Ray from fusing decoding into the first extractor's
    # actors, which would tie decode parallelism, and decoded frames, to that model's pool.
    # A whole block per call (feed.py sizes blocks): many small files share one task and one call.
    return ds.map_batches(
        read_decode, batch_size=None, num_cpus=1, memory=READ_MEMORY, resources={BATCH_RESOURCE: BATCH_SHARE},
        fn_kwargs={"source": spec.source.model_dump(mode="json"),
                   "preprocess": spec.preprocess.model_dump(mode="json"),
                   "per_file": [ex.spec.model_dump(mode="json") for ex in per_file], "progress": progress},
    )


def _extractor_stage(ds, ex: Extractor, progress: Any, where: str = "spec.extractors[?]"):
    """One extractor as an elastic actor pool (spec.extractors[].concurrency) on its own resources.
    An actor whose process dies is restarted a bounded number of times (Ray's default is forever);
    the stage's crash journal fails the items it dies on (extract_stage). A Serve-backed stage holds
    no model: it asks for SERVE_BACKED_CPUS and no GPU or memory (the deployment's replicas hold the
    model), and, like every stage, for the batch resource."""
    import warnings

    import ray

    from prism_pipeline.extract_stage import ACTOR_MAX_RESTARTS, ACTOR_MAX_TASK_RETRIES, stage_class
    from prism_pipeline.serve_backed import SERVE_BACKED_CPUS

    res = ex.spec.resources
    served = ex.spec.serve is not None
    options: dict[str, Any] = {"num_cpus": min(res.cpu, SERVE_BACKED_CPUS) if served else res.cpu,
                               "resources": {BATCH_RESOURCE: BATCH_SHARE},
                               "max_restarts": ACTOR_MAX_RESTARTS, "max_task_retries": ACTOR_MAX_TASK_RETRIES}
    if res.gpu and not served:
        options["num_gpus"] = res.gpu
    if res.memory and not served:
        options["memory"] = quantity_value(res.memory)
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for the restart bounds yet; its only way is deprecated.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            stage_class(ex.name), batch_size=int(ex.spec.batch_size),
            compute=ray.data.ActorPoolStrategy(min_size=ex.spec.concurrency.min, max_size=ex.spec.concurrency.max),
            fn_constructor_kwargs={"spec": ex.spec.model_dump(mode="json"), "progress": progress, "where": where},
            **options,
        )


# -- the driver's side of the stream --------------------------------------------------------------------

def _drain(ds, spec: ExtractionJobSpec, sink: Sink, tracker: FileTracker, progress: Any, run_key: str,
           deadline: Deadline | None = None) -> None:
    """Consume the stream on the driver, batch by batch: the sink writes (the embedded store's
    upserts; server mode's writers already did), the tracker accounts files and points, the progress
    actor gets what changed, and files whose points are written are recorded for incremental runs.
    Stopped (a signal, the deadline) still records the files whose points were written."""
    records = _Records(sink, run_key)
    try:
        for batch in _batches(ds, tracker, spec.stall_timeout_seconds, deadline):
            outcomes = R.from_batch(batch)
            records.add(_account(outcomes, sink.write(outcomes), tracker, progress))
    except Stopped:
        records.flush()  # the next incremental run resumes after them
        raise
    records.flush()


_DONE = object()


def _batches(ds, tracker: FileTracker, stall_s: float, deadline: Deadline | None = None) -> Iterator[dict]:
    """The stream's batches, read ahead by a feeder thread so the driver can notice a stall: raises
    JobError when no file has finished for `stall_s` seconds, or when Ray's own guard saw no data move,
    and Stopped past the deadline. However it ends, the feeder stops feeding."""
    batches: queue.Queue = queue.Queue(maxsize=STREAM_BUFFER)
    stop = threading.Event()
    threading.Thread(target=_feed, args=(ds, batches, stop), name="prism-stream", daemon=True).start()
    try:
        yield from _consume(batches, tracker, stall_s, deadline)
    except BaseException:
        stop.set()
        _stop_execution(ds)  # left early (stopped, failed): no stage goes on working for nobody
        raise
    finally:
        stop.set()


def _stop_execution(ds) -> None:
    """Stop Ray Data's execution of `ds` now (the feeder may be waiting on it for minutes): its
    executor is the thread whose dataset id holds ds's uuid. Left running, it would go on after
    ray.shutdown and log tracebacks, or start a new local Ray. Best effort: Ray Data internals."""
    try:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor

        uuid = ds._get_uuid()
    except Exception:  # another Ray Data: the executor ends with the process instead
        return
    for thread in threading.enumerate():
        if isinstance(thread, StreamingExecutor) and uuid in str(getattr(thread, "_dataset_id", "")):
            try:
                thread.shutdown(force=True)
            except Exception as err:
                log.debug("stopping the stream's execution: %s", err)


def _consume(batches: queue.Queue, tracker: FileTracker, stall_s: float, deadline: Deadline | None) -> Iterator[dict]:
    from ray.data.exceptions import ExecutionTimeoutError

    finished, last_finish = tracker.totals.files_finished, time.monotonic()
    while True:
        if deadline:
            deadline.check()
        if tracker.totals.files_finished != finished:  # the consumer finished files with the last batch
            finished, last_finish = tracker.totals.files_finished, time.monotonic()
        try:
            batch = batches.get(timeout=1.0)
        except queue.Empty:
            batch = None
        if batch is None:
            if time.monotonic() - last_finish > stall_s:
                raise JobError(f"pipeline stalled: no file finished in spec.stallTimeoutSeconds={stall_s}s "
                               f"({tracker.totals.files_finished}/{tracker.files_total} files finished); check "
                               "that workers advertise the 'batch' resource and that extractors are not hung")
            continue
        if batch is _DONE:
            return
        if isinstance(batch, ExecutionTimeoutError):
            raise JobError(f"pipeline stalled: no data moved for spec.stallTimeoutSeconds={stall_s}s "
                           f"({tracker.totals.files_finished}/{tracker.files_total} files finished). "
                           f"Ray says: {batch}") from batch
        if isinstance(batch, BaseException):
            raise batch
        yield batch


def _feed(ds, batches: queue.Queue, stop: threading.Event) -> None:
    """The feeder thread: iterate the stream into `batches`, then _DONE or the error that ended it;
    once `stop` is set (the consumer left), leave the stream (closing it ends Ray Data's execution)."""
    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    stream = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1))
    try:
        for batch in stream:
            if not hand_over(batch):
                getattr(stream, "close", lambda: None)()
                return
        hand_over(_DONE)
    except BaseException as err:  # handed to the consuming thread, if it is still there
        hand_over(err)


def _account(outcomes: list[dict[str, Any]], written: int, tracker: FileTracker,
             progress: Any) -> list[Written]:
    """One batch into the tracker, and what changed to the progress actor (fire-and-forget: stages
    count their own items, bytes and decodes; the driver adds files and points). Returns the files
    whose items the batch completed."""
    finished = tracker.observe_batch(outcomes, written)
    delta, failures = tracker.progress_delta()
    if not delta.is_zero() or failures:
        progress.add.remote(delta, failures)
    return finished


class _Records:
    """Written files waiting to be recorded for incremental runs: recorded every RECORD_FLUSH_FILES
    files or RECORD_FLUSH_S seconds, so a crash loses little and the sink sees few small writes.
    A recorded file whose content changed then loses its earlier points: its new points are all
    written, even when some lack the output of an extractor that failed (that file is recorded as
    failed, and the next run processes it again)."""

    def __init__(self, sink: Sink, run_key: str):
        self._sink, self._key = sink, run_key
        self._pending: list[Written] = []
        self._last_flush = time.monotonic()

    def add(self, finished: list[Written]) -> None:
        self._pending += finished
        if len(self._pending) >= RECORD_FLUSH_FILES or time.monotonic() - self._last_flush > RECORD_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._sink.record(self._pending, self._key)
            for f in self._pending:
                if f.recorded_hash and f.recorded_hash != f.content_hash:  # earlier content's points
                    self._sink.delete_stale(f.uri, f.content_hash)
        self._pending, self._last_flush = [], time.monotonic()


# -- after the stream ---------------------------------------------------------------------------------

def _delete_missing(spec: ExtractionJobSpec, sink: Sink, lister: Lister, progress: Any, tracker: FileTracker) -> int:
    """spec.deletedFiles Delete, once the stream ended: files the collection records that the listing
    did not list lose their points and records; how many. Never on an empty listing, nor when some
    entries could not be listed (their files' points must not go)."""
    if spec.deleted_files != "Delete":
        return 0
    if lister.unlisted:
        log.warning("spec.deletedFiles Delete: %d entries could not be listed (see the failure ledger), so "
                    "this run deletes nothing (their files' points must not go)", lister.unlisted)
        return 0
    if not lister.listed_uris:
        log.warning("spec.deletedFiles Delete: the source %s listed no files, so this run deletes nothing "
                    "(a missing mount must not wipe the collection)", spec.source.uri)
        return 0
    try:
        return sink.delete_missing(lister.listed_uris)
    except Exception as err:
        failed = JobError(f"spec.deletedFiles Delete: removing files no longer listed from "
                          f"{sink.collection!r} failed: {err}")
        _finish_failed(progress, tracker, failed)
        raise failed from err


def _verdict(name: str, spec: ExtractionJobSpec, extractors: list[Extractor], tracker: FileTracker,
             sink: Sink, started: float, removed: int = 0, stopped: Stopped | None = None) -> JobResult:
    """ok when the failed share of the listed files is within failurePolicy.maxFailedFileRatio and
    the run was not stopped before its end."""
    t = tracker.totals
    ratio = t.files_failed / tracker.files_total if tracker.files_total else 0.0
    limit = spec.failure_policy.max_failed_file_ratio
    ok = ratio <= limit
    message = (f"{t.files_done} files done, {t.files_skipped} skipped, {t.files_failed} failed "
               f"({ratio:.1%} failed; failurePolicy.maxFailedFileRatio {limit:.1%})")
    if spec.deleted_files == "Delete":
        message += f"; {removed} removed (no longer listed; spec.deletedFiles Delete)"
    if stopped is not None:
        ok = False
        message = (f"{stopped.message} after {t.files_finished}/{tracker.files_total} files: {message}; "
                   "run it again to resume (incremental runs skip the files recorded)")
    elif not ok:
        message = "too many files failed: " + message
    return JobResult(name=name, ok=ok, message=message, tracker=tracker, wall_s=time.monotonic() - started,
                     collection=sink.collection, points_in_collection=sink.count(),
                     extractors=[ex.name for ex in extractors], stopped=stopped, files_removed=removed)


def _finish(progress: Any, tracker: FileTracker, result: JobResult, *, wait: bool = True) -> None:
    """The driver's totals are exact; the actor's running counts came from fire-and-forget calls. The
    verdict goes with them, so a reader never sees the final totals without it."""
    import ray

    ref = progress.finish.remote(tracker.counts(), tracker.samples, result.outcome.value, result.message)
    if wait:
        ray.get(ref, timeout=30)


def _finish_failed(progress: Any, tracker: FileTracker, err: JobError) -> None:
    """Push the totals so far and the Failed verdict (fire-and-forget: the actor may be the problem)."""
    progress.finish.remote(tracker.counts(), tracker.samples, Outcome.FAILED.value, str(err))
