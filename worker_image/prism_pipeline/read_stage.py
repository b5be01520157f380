"""The read+decode stage: each file is fetched and decoded exactly once, in a Ray task.

Input rows are the driver's listing ({uri, size, prev_hash}); output rows are items (see rows.py).
A file that cannot be read or decoded becomes one "failed" row (never an exception that kills the
job); a file whose bytes hash to the content hash already recorded for it (incremental) becomes one
"skipped" row without being decoded. Per-file extractors (sequence extractors such as shot-boundary)
run here on each whole decoded file.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from prism_api import ExtractorSpec, Preprocess, SourceSpec
from prism_api.progress_report import Counts
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, build
from prism_pipeline.preprocess import DecodeError, decode_file, modality_of
from prism_pipeline.sources import ReadError, read_bytes

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
                progress: Any) -> dict[str, np.ndarray]:
    """map_batches function over the listing: files in, item rows out."""
    started = time.process_time()
    src = SourceSpec.model_validate(source)
    pre = Preprocess.model_validate(preprocess)
    extractors = _per_file_extractors(per_file)
    out: list[dict[str, Any]] = []
    counts = Counts()
    for uri, prev_hash in zip(batch["uri"], batch["prev_hash"], strict=True):
        file_rows = read_one(str(uri), prev_hash or None, src, pre, extractors)
        first = file_rows[0]
        counts.bytes_read += int(first["bytes_read"])
        counts.decodes += int(first["decoded"])
        for ex in extractors:
            done = sum(1 for r in file_rows if r["status"] == R.ITEM and ex.name in r["outputs"])
            failed = sum(1 for r in file_rows for e in r["errors"] if e["stage"] == ex.name)
            if done:
                counts.items[ex.name] = counts.items.get(ex.name, 0) + done
            if failed:
                counts.items_failed[ex.name] = counts.items_failed.get(ex.name, 0) + failed
        out.extend(file_rows)
    counts.cpu_seconds = time.process_time() - started
    if progress is not None:
        progress.add.remote(counts)  # fire-and-forget: once per batch, never awaited
    return R.to_batch(out) if out else R.empty_batch()


def read_one(uri: str, prev_hash: str | None, src: SourceSpec, pre: Preprocess,
             extractors: list[Extractor]) -> list[dict[str, Any]]:
    """All stream rows of one file (at least one)."""
    if modality_of(uri) is None:
        # Not fetched at all: the extension alone says it cannot be decoded.
        return [R.file_marker(uri, R.FAILED, stage="decode", error=f"{uri}: unsupported file type; "
                              "narrow spec.source.include to the media you want processed")]
    try:
        data = read_bytes(uri, src)
    except ReadError as err:
        return [R.file_marker(uri, R.FAILED, stage="read", error=str(err))]
    except Exception as err:  # a source bug must cost one file, not the job
        return [R.file_marker(uri, R.FAILED, stage="read", error=f"{type(err).__name__}: {err}")]
    digest = hashlib.sha256(data).hexdigest()
    if prev_hash and prev_hash == digest:
        return [R.file_marker(uri, R.SKIPPED, content_hash=digest, bytes_read=len(data))]
    try:
        items = decode_file(uri, data, pre)
    except DecodeError as err:
        return [R.file_marker(uri, R.FAILED, content_hash=digest, stage=getattr(err, "stage", "decode"),
                              error=str(err), bytes_read=len(data), decoded=True)]
    except Exception as err:  # decoders of untrusted media raise anything; record, skip, go on
        return [R.file_marker(uri, R.FAILED, content_hash=digest, stage="decode",
                              error=f"{uri}: {type(err).__name__}: {err}", bytes_read=len(data), decoded=True)]
    size = len(data)
    del data  # the items hold what is needed; free the encoded bytes before extractors run
    if not items:
        return [R.file_marker(uri, R.EMPTY, content_hash=digest, bytes_read=size, decoded=True)]
    for i, item in enumerate(items):
        # The file's counters ride on its first row so the driver counts each file once.
        item.update(status=R.ITEM, file_items=len(items), outputs={}, errors=[],
                    bytes_read=size if i == 0 else 0, decoded=i == 0)
    for ex in extractors:
        _run_per_file(ex, items)
    return items


def _run_per_file(ex: Extractor, items: list[dict[str, Any]]) -> None:
    """Run a per-file extractor on the file's accepted items; one failure marks all of them,
    since a sequence result is only meaningful for the whole sequence."""
    chosen = [it for it in items if ex.accepts(it)]
    if not chosen:
        return
    try:
        outputs = ex(chosen)
        if len(outputs) != len(chosen):
            raise ValueError(f"returned {len(outputs)} outputs for {len(chosen)} items")
    except Exception as err:
        for it in chosen:
            it["errors"].append({"stage": ex.name, "error": f"{type(err).__name__}: {err}"})
        return
    for it, value in zip(chosen, outputs, strict=True):
        it["outputs"][ex.name] = value
