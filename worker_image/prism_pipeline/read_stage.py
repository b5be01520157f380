"""The read+decode stage: each file is fetched, hashed and decoded exactly once, in a Ray task.

Input rows are the driver's listing ({uri, size, prev_hash}), a block of files per call (feed.py
groups small files, so they share a task's fixed cost); output rows are items (see rows.py), yielded
in batches of at most ITEMS_PER_BATCH rows as the decoder produces them, so a long video never holds
all its frames in memory. The rows of consecutive small files share a batch: one batch, one
progress call and one pickled block carry many one-item files. A file that cannot be read or decoded becomes one "failed" row
(never an exception that kills the job): an unsupported extension or a listed size over
spec.source.maxFileBytes fails it before any fetch. A file whose bytes hash to the content hash
already recorded for it (incremental) becomes one "skipped" row without being decoded.

Per-file extractors (sequence extractors such as shot-boundary) run here on each whole decoded
file: the items they accept, and only those, are held until the file's last item is decoded. One
that sets a `thumbnails` attribute (a preprocess.video.ThumbnailRequest) also gets every frame of a
video, shrunk, from the same decode pass: its items carry them under "thumbnails" (the same
video.Thumbnails object on each) while it runs, and never leave this stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from prism_api import ExtractorSpec, Preprocess, SourceSpec
from prism_api.progress_report import Counts
from prism_pipeline import rows as R
from prism_pipeline.extract_stage import payload_problem
from prism_pipeline.extractors import Extractor, Payload, build
from prism_pipeline.preprocess import DecodedFile, DecodeError, iter_items, require_supported
from prism_pipeline.preprocess.video import Thumbnails
from prism_pipeline.sources import Fetched, ReadError, open_file

ITEMS_PER_BATCH = 16  # decoded items a read task holds before handing them on (frames: a few MB each)

# Per-file extractors set up once per worker process (read tasks are stateless functions).
_PER_FILE: dict[str, Extractor] = {}


def _per_file_extractors(specs: list[dict]) -> list[Extractor]:
    out = []
    for raw in specs:
        spec = ExtractorSpec.model_validate(raw)
        key = spec.model_dump_json()
        if key not in _PER_FILE:
            ex = build(spec)
            ex.setup()
            _PER_FILE[key] = ex
        out.append(_PER_FILE[key])
    return out


def read_decode(batch: dict[str, np.ndarray], *, source: dict, preprocess: dict, per_file: list[dict],
                progress: Any) -> Iterator[dict[str, np.ndarray]]:
    """map_batches function over the listing: files in, batches of item rows out. A generator: Ray
    Data hands each batch on as it is yielded."""
    src = SourceSpec.model_validate(source)
    pre = Preprocess.model_validate(preprocess)
    extractors = _per_file_extractors(per_file)
    ready: list[dict[str, Any]] = []
    started = time.process_time()
    for uri, size, prev_hash in zip(batch["uri"], batch["size"], batch["prev_hash"], strict=True):
        for rows in read_file(str(uri), int(size), prev_hash or None, src, pre, extractors):
            ready += rows
            if len(ready) >= ITEMS_PER_BATCH:
                yield _hand_on(ready, extractors, progress, time.process_time() - started)
                ready, started = [], time.process_time()
    if ready:
        yield _hand_on(ready, extractors, progress, time.process_time() - started)


def _hand_on(rows: list[dict[str, Any]], extractors: list[Extractor], progress: Any,
             cpu_seconds: float) -> dict[str, np.ndarray]:
    if progress is not None:  # fire-and-forget, once per batch, never awaited
        progress.add.remote(_counts(rows, extractors, cpu_seconds))
    return R.to_batch(rows)


def _counts(rows: list[dict[str, Any]], extractors: list[Extractor], cpu_seconds: float) -> Counts:
    """What a batch of this stage's rows adds to the progress counts."""
    counts = Counts(cpu_seconds=cpu_seconds)
    counts.bytes_read = sum(int(r["bytes_read"]) for r in rows)
    counts.decodes = sum(int(r["decoded"]) for r in rows)
    for ex in extractors:
        done = sum(1 for r in rows if r["status"] == R.ITEM and ex.name in r["outputs"])
        failed = sum(1 for r in rows for e in r["errors"] if e["stage"] == ex.name)
        if done:
            counts.items[ex.name] = done
        if failed:
            counts.items_failed[ex.name] = failed
    return counts


def read_file(uri: str, size: int | None, prev_hash: str | None, src: SourceSpec, pre: Preprocess,
              extractors: list[Extractor], per_batch: int = ITEMS_PER_BATCH) -> Iterator[list[dict[str, Any]]]:
    """The stream rows of one file (at least one), in lists of at most `per_batch` rows. `size` is
    the listed size: an oversized file is refused before it is fetched. The file is read in chunks
    (hashed on the way; a remote object spooled to a temporary file) and decoded from there, so it
    is never held whole in memory."""
    try:
        require_supported(uri)  # the extension alone says it cannot be decoded: not fetched at all
        fetched = open_file(uri, src, size)
    except DecodeError as err:
        yield [R.file_marker(uri, R.FAILED, stage=err.stage, error=str(err))]
        return
    except ReadError as err:
        yield [R.file_marker(uri, R.FAILED, stage="read", error=str(err))]
        return
    except Exception as err:  # a source bug must cost one file, not the job
        yield [R.file_marker(uri, R.FAILED, stage="read", error=f"{type(err).__name__}: {err}")]
        return
    with fetched:
        yield from _decoded_rows(uri, fetched, prev_hash, pre, extractors, per_batch)


def _decoded_rows(uri: str, fetched: Fetched, prev_hash: str | None, pre: Preprocess, extractors: list[Extractor],
                  per_batch: int) -> Iterator[list[dict[str, Any]]]:
    # The file's one hash (preprocess.content_hash's value): skip check, items, point ids.
    digest, nbytes = fetched.digest, fetched.size
    if prev_hash and prev_hash == digest:
        yield [R.file_marker(uri, R.SKIPPED, content_hash=digest, bytes_read=nbytes)]
        return
    try:
        # Video thumbnails per-file extractors asked for, filled by the decoder in the same pass.
        thumbnails = dict.fromkeys(r for ex in extractors if (r := getattr(ex, "thumbnails", None)) is not None)
        decoded = iter_items(uri, fetched.file, pre, digest, thumbnails)
    except DecodeError as err:
        yield [R.file_marker(uri, R.FAILED, content_hash=digest, stage=err.stage, error=str(err),
                             bytes_read=nbytes, decoded=True)]
        return
    except Exception as err:  # decoders of untrusted media raise anything; record, skip, go on
        yield [R.file_marker(uri, R.FAILED, content_hash=digest, stage="decode",
                             error=f"{uri}: {type(err).__name__}: {err}", bytes_read=nbytes, decoded=True)]
        return
    if not decoded.count:
        yield [R.file_marker(uri, R.EMPTY, content_hash=digest, bytes_read=nbytes, decoded=True)]
        return
    yield from _item_rows(uri, digest, nbytes, decoded, extractors, per_batch, thumbnails)


def _item_rows(uri: str, digest: str, nbytes: int, decoded: DecodedFile, extractors: list[Extractor],
               per_batch: int, thumbnails: dict | None = None) -> Iterator[list[dict[str, Any]]]:
    """Item rows as they are decoded, each stamped with the file's item count; the file's counters
    ride on its first row so the driver counts each file once. One row is always kept back until
    the end, so an error after the last item has a row to ride on."""
    ready: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []  # items a per-file extractor needs together
    error = None
    try:
        for item in decoded:
            first = decoded.produced == 1
            item.update(status=R.ITEM, file_items=decoded.count, outputs={}, errors=[],
                        bytes_read=nbytes if first else 0, decoded=first)
            (held if any(ex.accepts(item) for ex in extractors) else ready).append(item)
            if len(ready) > per_batch:
                yield ready[:per_batch]
                ready = ready[per_batch:]
    except DecodeError as err:
        error = {"stage": err.stage, "error": str(err)}
    except Exception as err:  # decoders of untrusted media raise anything; record, go on
        error = {"stage": "decode", "error": f"{uri}: {type(err).__name__}: {err}"}
    if error and not decoded.produced:
        yield [R.file_marker(uri, R.FAILED, content_hash=digest, stage=error["stage"], error=error["error"],
                             bytes_read=nbytes, decoded=True)]
        return
    for ex in extractors:
        request = getattr(ex, "thumbnails", None)
        _run_per_file(ex, held, (thumbnails or {}).get(request) if request is not None else None)
    rest = ready + held + _gaps(uri, digest, nbytes, decoded, error)
    if error and decoded.produced == decoded.count:
        rest[-1]["errors"].append(error)
    for start in range(0, len(rest), per_batch):
        yield rest[start:start + per_batch]


def _gaps(uri: str, digest: str, nbytes: int, decoded: DecodedFile, error: dict | None) -> list[dict[str, Any]]:
    """Gap rows for the items the decoder announced and did not produce; the first carries the
    error that cut the file short (the file then fails), or the file's counters if no item came."""
    missing = decoded.count - decoded.produced
    return [R.gap_row(uri, digest, decoded.count, error=error if i == 0 else None,
                      bytes_read=nbytes if i == 0 and not decoded.produced else 0,
                      decoded=i == 0 and not decoded.produced)
            for i in range(missing)]


def _run_per_file(ex: Extractor, items: list[dict[str, Any]], thumbnails: Thumbnails | None = None) -> None:
    """Run a per-file extractor on the file's accepted items; one failure marks all of them,
    since a sequence result is only meaningful for the whole sequence. `thumbnails`: the file's
    video frames the extractor asked for, lent to it on the items for this call only."""
    chosen = [it for it in items if ex.accepts(it)]
    if not chosen:
        return
    try:
        if thumbnails is not None:
            for it in chosen:
                it["thumbnails"] = thumbnails
        outputs = ex(chosen)
        if len(outputs) != len(chosen):
            raise ValueError(f"returned {len(outputs)} outputs for {len(chosen)} items")
    except Exception as err:
        for it in chosen:
            it["errors"].append({"stage": ex.name, "error": f"{type(err).__name__}: {err}"})
        return
    finally:
        for it in chosen:  # thumbnails never travel down the stream (items keep ITEM_KEYS)
            it.pop("thumbnails", None)
    payload = isinstance(ex.output, Payload)
    for it, value in zip(chosen, outputs, strict=True):
        problem = payload_problem(value) if payload else None
        if problem is not None:  # that item fails under the extractor, not the write of its batch
            it["errors"].append({"stage": ex.name,
                                 "error": f"extractor {ex.name!r} returned a payload JSON cannot hold: {problem}"})
        else:
            it["outputs"][ex.name] = value
