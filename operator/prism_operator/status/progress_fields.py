"""Progress, failures and usage from a progress snapshot (pure).

`percent` and `summary` count every finished file (done, failed or skipped) against the files
listed. Rates compare with the previous reading, so a progress read that changed nothing leaves
the status untouched (no patch).
"""

from __future__ import annotations

from datetime import datetime

from prism_api import (
    MAX_FAILURE_SAMPLES,
    ExtractorProgress,
    Failures,
    FailureSample,
    Progress,
    Usage,
)

from ..progress_scraper import ProgressSnapshot
from .clock import rfc3339, seconds_since


def _extractors(snap: ProgressSnapshot, order: list[str]) -> list[ExtractorProgress]:
    names = [n for n in order if n in snap.items or n in snap.items_failed]
    names += sorted((set(snap.items) | set(snap.items_failed)) - set(names))
    return [ExtractorProgress(name=n[:63], items_done=snap.items.get(n, 0), items_failed=snap.items_failed.get(n, 0))
            for n in names[:64]]


def progress_from(old: Progress, snap: ProgressSnapshot | None, extractor_order: list[str],
                  now: datetime) -> Progress:
    if snap is None:
        return old
    finished = snap.files_done + snap.files_failed + snap.files_skipped
    total = max(snap.files_total, finished)
    counts = Progress(
        files_total=snap.files_total,
        files_done=snap.files_done,
        files_failed=snap.files_failed,
        files_skipped=snap.files_skipped,
        summary=f"{finished}/{total}",
        percent=min(100, finished * 100 // total) if total else (100 if snap.finished else 0),
        points_written=snap.points_written,
        extractors=_extractors(snap, extractor_order),
    )
    same = counts.model_dump(include={"files_total", "files_done", "files_failed", "files_skipped",
                                      "points_written", "extractors"})
    if old.last_update_time and same == old.model_dump(include=set(same)):
        return old  # nothing moved: keep the old reading (and its rates) and patch nothing

    items_per_second, eta = 0.0, None
    elapsed = seconds_since(old.last_update_time, now)
    if elapsed and elapsed > 0:
        old_items = sum(e.items_done for e in old.extractors)
        new_items = sum(e.items_done for e in counts.extractors)
        old_finished = old.files_done + old.files_failed + old.files_skipped
        if new_items >= old_items:
            items_per_second = round((new_items - old_items) / elapsed, 2)
        files_rate = (finished - old_finished) / elapsed
        if files_rate > 0 and total > finished:
            eta = int((total - finished) / files_rate)
    return counts.model_copy(update={
        "items_per_second": items_per_second,
        "eta_seconds": eta if not snap.finished else 0,
        "last_update_time": rfc3339(now),
    })


def failures_from(old: Failures, snap: ProgressSnapshot | None) -> Failures:
    if snap is None:
        return old
    samples = [FailureSample(uri=u[:2048], stage=s[:64], error=e[:1024])
               for u, s, e in snap.failure_samples[:MAX_FAILURE_SAMPLES]]
    return Failures(count=snap.files_failed, samples=samples)


def usage_from(old: Usage, snap: ProgressSnapshot | None) -> Usage:
    if snap is None:
        return old
    return Usage(cpu_seconds=round(snap.cpu_seconds, 3), gpu_seconds=round(snap.gpu_seconds, 3))

