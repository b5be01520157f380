"""A re-run with nothing to do, decided on the driver before any Ray Data pipeline is built.

An incremental re-run normally streams every listed file through the read stage, which hashes its
bytes and skips it on a match (incremental.py): cheap per file, but the pipeline still starts every
extractor's actor pool, each loading its model, only to pass skip markers through. When every listed
file has a complete record of this run's key and the files are local and small in total, the driver
hashes them itself (the read stage's algorithm, sources.open_file); if every hash matches there is
nothing to extract, and the files are accounted as skipped without building the pipeline.

Remote sources are left to the read tasks (the driver would download every object one by one), and
so are local sources above DRIVER_CHECK_BYTES (the read tasks hash in parallel).
"""

from __future__ import annotations

from typing import Any

from prism_api import ExtractionJobSpec
from prism_pipeline import rows as R
from prism_pipeline.ledger import FileTracker
from prism_pipeline.sources import ReadError, SourceError, open_file, split_uri

DRIVER_CHECK_BYTES = 512 * 1024**2


def every_file_unchanged(spec: ExtractionJobSpec, refs: list, skip_if: dict[str, str],
                         max_bytes: int = DRIVER_CHECK_BYTES) -> bool:
    """Whether every listed file is local, recorded complete with this run's key (`skip_if`, empty
    when spec.incremental is off) and hashes to its record. Stops at the first file that is not."""
    if not refs or any(r.uri not in skip_if for r in refs) or sum(int(r.size) for r in refs) > max_bytes:
        return False
    try:
        if any(split_uri(r.uri)[0] is not None for r in refs):
            return False
        for r in refs:
            with open_file(r.uri, spec.source, int(r.size)) as fetched:
                if fetched.digest != skip_if[r.uri]:
                    return False
    except (ReadError, SourceError, OSError):  # the read stage reports it, as for any run
        return False
    return True


def account_skipped(refs: list, tracker: FileTracker, progress: Any) -> None:
    """The files as the read stage's skip markers would have accounted them: skipped, bytes read."""
    before = tracker.driver_counts()
    tracker.observe_batch([R.file_marker(r.uri, R.SKIPPED, content_hash=None, bytes_read=int(r.size))
                           for r in refs], 0)
    if progress is not None:
        progress.add.remote(tracker.driver_counts() - before, [])
