"""The status's progress, failures and usage from the pipeline's ProgressReport (pure).

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
from prism_api.outcome import OutcomeReport
from prism_api.progress_report import ProgressReport

from .clock import rfc3339, seconds_since


def _extractors(report: ProgressReport, order: list[str]) -> list[ExtractorProgress]:
    items, failed = report.counts.items, report.counts.items_failed
    names = [n for n in order if n in items or n in failed]
    names += sorted((set(items) | set(failed)) - set(names))
    return [ExtractorProgress(name=n[:63], items_done=items.get(n, 0), items_failed=failed.get(n, 0))
            for n in names[:64]]


def progress_from(old: Progress, report: ProgressReport | None, extractor_order: list[str],
                  now: datetime) -> Progress:
    if report is None:
        return old
    c = report.counts
    finished = c.files_finished
    total = max(report.files_total, finished)
    counts = Progress(
        files_total=report.files_total,
        listing="Complete" if report.listing_complete else "InProgress",
        files_done=c.files_done,
        files_failed=c.files_failed,
        files_skipped=c.files_skipped,
        summary=f"{finished}/{total}",
        percent=min(100, finished * 100 // total) if total else (100 if report.finished else 0),
        points_written=c.points_written,
        extractors=_extractors(report, extractor_order),
    )
    same = counts.model_dump(include={"files_total", "listing", "files_done", "files_failed", "files_skipped",
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
        "eta_seconds": eta if not report.finished else 0,
        "last_update_time": rfc3339(now),
    })


def failures_from(old: Failures, report: ProgressReport | None, printed: OutcomeReport | None = None) -> Failures:
    """From the last progress reading, unless the driver's verdict line counts more failed files
    (the endpoint was never readable, or the driver was gone before the final reading)."""
    if printed is not None and printed.files_failed > (report.counts.files_failed if report else old.count):
        return Failures(count=printed.files_failed,
                        samples=[FailureSample(uri=f.uri, stage=f.stage, error=f.error)
                                 for f in printed.failures[:MAX_FAILURE_SAMPLES]])
    if report is None:
        return old
    samples = [FailureSample(uri=f.uri, stage=f.stage, error=f.error)
               for f in (f.bounded() for f in report.failures[:MAX_FAILURE_SAMPLES])]
    return Failures(count=report.counts.files_failed, samples=samples)


def usage_from(old: Usage, report: ProgressReport | None) -> Usage:
    if report is None:
        return old
    return Usage(cpu_seconds=round(report.counts.cpu_seconds, 3), gpu_seconds=round(report.counts.gpu_seconds, 3))

