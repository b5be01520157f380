"""One ExtractionJob as one streaming Ray Data pipeline (DESIGN §4):

    list files (driver) -> incremental lookup -> read+decode once per file (tasks)
      -> extractor 1 -> ... -> extractor N   (chained actor stages over the one stream)
      -> points (+ upsert in server mode) -> driver: file outcomes, embedded upserts, file records

The driver consumes the stream's compact outcome rows, which gives backpressure for free and
makes the driver the one authoritative account of every file (ledger.FileTracker). Nothing is
materialized and no lazy dataset is branched.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prism_api import ExtractionJobSpec
from prism_api.conventions import BATCH_RESOURCE
from prism_api.fields import quantity_value
from prism_api.outcome import Outcome
from prism_api.progress_report import Counts
from prism_pipeline import incremental
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, ExtractorError, build_all
from prism_pipeline.ledger import Failure, FileTracker
from prism_pipeline.sink import CollectionError, Sink, StoreBusyError
from prism_pipeline.sources import SourceError, list_files

log = logging.getLogger("prism.pipeline")

# Every stage asks for this much of the synthetic "batch" resource: a token, not a quota. It pins
# stages to nodes that advertise `batch` (Prism workers); CPUs and GPUs do the actual counting.
BATCH_SHARE = 0.001
READ_MEMORY = 256 * 1024**2
RECORD_FLUSH_S = 2.0     # how often finished files are recorded for incremental runs
RECORD_FLUSH_FILES = 256


class JobError(Exception):
    """The job cannot start or cannot go on; the message says why and what to do."""


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

    @property
    def failures(self) -> list[Failure]:
        return self.tracker.failures

    @property
    def outcome(self) -> Outcome:
        """The verdict on a pipeline that ran to its end: ok is decided by maxFailedFileRatio alone."""
        return Outcome.SUCCEEDED if self.ok else Outcome.TOO_MANY_FAILED_FILES


def run_job(name: str, spec: ExtractionJobSpec, *, state_dir: str | Path = ".prism",
            progress_port: int | None = None, on_progress: Callable[[Any], None] | None = None,
            namespace: str = "", attempt: int = 1) -> JobResult:
    """Run the job on the Ray cluster this process is connected to. Raises JobError when it
    cannot start or cannot go on (its outcome is Outcome.FAILED, recorded on the progress actor when
    there is one); otherwise returns the result (ok decided by failurePolicy.maxFailedFileRatio,
    its outcome recorded on the progress actor with the final totals)."""
    import ray

    started = time.monotonic()
    try:
        extractors = build_all(spec.extractors)
    except ExtractorError as err:
        raise JobError(str(err)) from err
    try:
        refs = list_files(spec.source)
    except SourceError as err:
        raise JobError(str(err)) from err
    try:
        sink = Sink(spec.sink.qdrant, extractors, state_dir)
        sink.prepare()
    except (CollectionError, StoreBusyError) as err:
        raise JobError(str(err)) from err
    except Exception as err:  # server unreachable, auth refused, ...
        raise JobError(f"spec.sink.qdrant: cannot prepare collection {spec.sink.qdrant.collection!r}: "
                       f"{type(err).__name__}: {err}") from err
    key = incremental.run_key(spec, extractors)
    uris = [r.uri for r in refs]
    records = incremental.recorded(sink.client, sink.collection, uris)
    skip_if = incremental.previous_hashes(records, key) if spec.incremental else {}
    recorded_hashes = {uri: r["content_hash"] for uri, r in records.items()}

    from prism_pipeline.progress_actor import start_progress_actor

    progress, port = start_progress_actor(name, len(refs), progress_port, namespace=namespace, attempt=attempt)
    if port is not None:
        log.info("progress: http://0.0.0.0:%s/metrics", port)
    if on_progress:
        on_progress(progress)
    tracker = FileTracker(files_total=len(refs))
    try:
        if refs:
            if BATCH_RESOURCE not in ray.cluster_resources():
                log.warning("no Ray node advertises the 'batch' resource yet: stages wait for a Prism worker "
                            "(cluster.batchResource); the job fails after stallTimeoutSeconds if none comes")
            ds = build_dataset(spec, extractors, refs, skip_if, sink, progress)
            _consume(ds, spec, sink, tracker, progress, key, recorded_hashes)
        tracker.close(uris)
    except JobError as err:
        _finish_failed(progress, tracker, err)
        raise
    except Exception as err:
        # A stage that raised past its own handling (the sink refusing writes after its retries,
        # a worker lost for good): the job cannot go on. Ray's messages repeat the traceback; the
        # first lines say what happened.
        first = "\n".join(str(err).strip().splitlines()[-6:])
        failed = JobError(f"pipeline failed after {tracker.files_finished}/{tracker.files_total} files: "
                          f"{type(err).__name__}: {first}")
        _finish_failed(progress, tracker, failed)
        raise failed from err
    ratio = tracker.files_failed / len(refs) if refs else 0.0
    limit = spec.failure_policy.max_failed_file_ratio
    ok = ratio <= limit
    message = (f"{tracker.files_done} files done, {tracker.files_skipped} skipped, {tracker.files_failed} failed "
               f"({ratio:.1%} failed; failurePolicy.maxFailedFileRatio {limit:.1%})")
    if not ok:
        message = "too many files failed: " + message
    result = JobResult(name=name, ok=ok, message=message, tracker=tracker, wall_s=time.monotonic() - started,
                       collection=sink.collection, points_in_collection=sink.count(),
                       extractors=[ex.name for ex in extractors])
    # The driver's totals are exact; the actor's running counts came from fire-and-forget calls. The
    # verdict goes with them, so a reader never sees the final totals without it.
    ray.get(progress.finish.remote(tracker.counts(), tracker.failures, result.outcome.value, message), timeout=30)
    return result


def _finish_failed(progress: Any, tracker: FileTracker, err: JobError) -> None:
    """Push the totals so far and the Failed verdict (fire-and-forget: the actor may be the problem)."""
    progress.finish.remote(tracker.counts(), tracker.failures, Outcome.FAILED.value, str(err))


def build_dataset(spec: ExtractionJobSpec, extractors: list[Extractor], refs: list, prev: dict[str, str],
                  sink: Sink, progress: Any):
    import ray

    from prism_pipeline.extract_stage import ExtractorStage
    from prism_pipeline.read_stage import read_decode

    listing = [{"uri": r.uri, "size": int(r.size), "prev_hash": prev.get(r.uri, "")} for r in refs]
    # One block per file up to a bound: each block is a read task, so files decode in parallel.
    ds = ray.data.from_items(listing, override_num_blocks=max(1, min(len(listing), 2000)))
    # Ray's own guard: no block moving anywhere for this long fails the execution (default 1800 s).
    ds.context.execution_no_progress_timeout_s = float(spec.stall_timeout_seconds)
    ds.context.enable_progress_bars = False
    per_file = [ex for ex in extractors if ex.per_file]
    # The memory hint is a floor for one file's decoded items (frames add up). Differing from the
    # extractor stages' arguments, it also keeps Ray from fusing decoding into the first extractor's
    # actors, which would tie decode parallelism, and decoded frames, to that model's pool.
    ds = ds.map_batches(
        read_decode, batch_size=1, num_cpus=1, memory=READ_MEMORY, resources={BATCH_RESOURCE: BATCH_SHARE},
        fn_kwargs={"source": spec.source.model_dump(mode="json"),
                   "preprocess": spec.preprocess.model_dump(mode="json"),
                   "per_file": [ex.spec.model_dump(mode="json") for ex in per_file], "progress": progress},
    )
    for ex in extractors:
        if ex.per_file:
            continue
        res = ex.spec.resources
        options: dict[str, Any] = {"num_cpus": res.cpu, "resources": {BATCH_RESOURCE: BATCH_SHARE}}
        if res.gpu:
            options["num_gpus"] = res.gpu
        if res.memory:
            options["memory"] = quantity_value(res.memory)
        ds = ds.map_batches(
            ExtractorStage, batch_size=int(ex.spec.batch_size),
            compute=ray.data.ActorPoolStrategy(min_size=ex.spec.concurrency.min,
                                               max_size=ex.spec.concurrency.max),
            fn_constructor_kwargs={"spec": ex.spec.model_dump(mode="json"), "progress": progress},
            **options,
        )
    return sink.add_stage(ds, BATCH_SHARE)


def _consume(ds, spec: ExtractionJobSpec, sink: Sink, tracker: FileTracker, progress: Any, key: str,
             prev: dict[str, str]) -> None:
    """Drain the stream on the driver: account files, write embedded points, record finished files,
    report progress once per batch, and fail a stalled pipeline after spec.stallTimeoutSeconds."""
    from ray.data.exceptions import ExecutionTimeoutError

    batches: queue.Queue = queue.Queue(maxsize=4)
    done = object()

    def feed() -> None:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                batches.put(batch)
            batches.put(done)
        except BaseException as err:  # handed to the consuming thread
            batches.put(err)

    threading.Thread(target=feed, name="prism-stream", daemon=True).start()
    stall = spec.stall_timeout_seconds
    last_finish = time.monotonic()
    pending: list[tuple[str, str, int]] = []
    last_flush = time.monotonic()
    while True:
        try:
            batch = batches.get(timeout=1.0)
        except queue.Empty:
            batch = None
        if batch is done:
            break
        if isinstance(batch, ExecutionTimeoutError):
            raise JobError(f"pipeline stalled: no data moved for spec.stallTimeoutSeconds={stall}s "
                           f"({tracker.files_finished}/{tracker.files_total} files finished). "
                           f"Ray says: {batch}") from batch
        if isinstance(batch, BaseException):
            raise batch
        if batch is None:
            if time.monotonic() - last_finish > stall:
                raise JobError(f"pipeline stalled: no file finished in spec.stallTimeoutSeconds={stall}s "
                               f"({tracker.files_finished}/{tracker.files_total} files finished); check "
                               "that workers advertise the 'batch' resource and that extractors are not hung")
            continue
        outs = R.from_batch(batch)
        points = [o["point"] for o in outs if o.get("point") is not None]
        sink.write_points(points)
        before = tracker.counts()
        tracker.points += len(points) if not sink.server else sum(1 for o in outs if o.get("written"))
        for o in outs:
            finished = tracker.observe(o)
            if finished:
                pending.append(finished)
        after = tracker.counts()
        if after.files_finished != before.files_finished:
            last_finish = time.monotonic()
        # Stages count their own items, bytes and decodes; the driver adds files and points.
        delta = Counts(files_done=after.files_done - before.files_done,
                       files_failed=after.files_failed - before.files_failed,
                       files_skipped=after.files_skipped - before.files_skipped,
                       points_written=after.points_written - before.points_written)
        new_failures = tracker.failures[len(tracker.failures) - delta.files_failed:] if delta.files_failed else []
        if not delta.is_zero():
            progress.add.remote(delta, new_failures)
        if len(pending) >= RECORD_FLUSH_FILES or time.monotonic() - last_flush > RECORD_FLUSH_S:
            _record(sink, pending, key, prev)
            pending, last_flush = [], time.monotonic()
    _record(sink, pending, key, prev)


def _record(sink: Sink, finished: list[tuple[str, str, int]], key: str, prev: dict[str, str]) -> None:
    if not finished:
        return
    incremental.write_records(sink.client, sink.collection, finished, key)
    for uri, content_hash, _ in finished:
        if uri in prev and prev[uri] != content_hash:
            incremental.delete_stale(sink.client, sink.collection, uri, content_hash)
