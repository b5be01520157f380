"""The driver's account of every file: done, failed (the failure ledger), skipped.

It reads the outcome rows at the end of the stream. A file is done when all of its items have come
through (each item row carries its file's item count); it fails if it could not be read or decoded,
or if an extractor failed on any of its items. Those items are still written, each point naming the
extractors that failed on it (points.py), and the file is recorded as written but failed (`Written`),
so the next incremental run extracts it again (incremental.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from prism_api.point_payload import ExtractorFailure
from prism_api.progress_report import Counts, FailedFile
from prism_pipeline import rows as R

# A failed file: uri, stage (read, decode, an extractor name, or pipeline) and error.
Failure = FailedFile


class Written(NamedTuple):
    """A file all of whose items came through the stream, so its points are written: the driver
    records it for incremental runs. `failed_stage` says where it failed if it did (an extractor that
    failed on some of its items, whose points lack that output; a decoder that stopped early); a
    file recorded with one is not complete, and the next run processes it again."""

    uri: str
    content_hash: str
    items: int
    failed_stage: str = ""


@dataclass
class FileTracker:
    """The driver's account, in the progress report's vocabulary (`totals`), plus the failure ledger."""

    files_total: int
    totals: Counts = field(default_factory=Counts)
    failures: list[Failure] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)
    _first_error: dict[str, dict[str, str]] = field(default_factory=dict)
    _finished_uris: set[str] = field(default_factory=set)

    def observe(self, o: dict[str, Any]) -> Written | None:
        """Account for one outcome row; return the file when the row completes its items (that
        file is recorded for incremental runs, with the stage it failed at if it failed)."""
        uri, status, t = o["uri"], o["status"], self.totals
        t.bytes_read += o.get("bytes_read") or 0
        t.decodes += int(bool(o.get("decoded")))
        for name in o.get("processed", ()):
            t.items[name] = t.items.get(name, 0) + 1
        if status == R.FAILED:
            err = o["errors"][0] if o["errors"] else {"stage": "pipeline", "error": "failed"}
            self._fail(uri, err["stage"], err["error"])
            return None
        if status == R.SKIPPED:
            t.files_skipped += 1
            self._finished_uris.add(uri)
            return None
        if status == R.EMPTY:
            t.files_done += 1
            self._finished_uris.add(uri)
            return Written(uri, o["content_hash"], 0)
        if status != R.GAP:  # a gap's error is its file's decode failure, not an extractor's item failure
            for err in o["errors"]:
                t.items_failed[err["stage"]] = t.items_failed.get(err["stage"], 0) + 1
        if o["errors"]:
            self._first_error.setdefault(uri, o["errors"][0])
        seen = self._seen.get(uri, 0) + 1
        if seen < o["file_items"]:
            self._seen[uri] = seen
            return None
        self._seen.pop(uri, None)
        err = self._first_error.pop(uri, None)
        if err:
            self._fail(uri, err["stage"], err["error"])
            return Written(uri, o["content_hash"], o["file_items"], err["stage"])
        t.files_done += 1
        self._finished_uris.add(uri)
        return Written(uri, o["content_hash"], o["file_items"])

    def observe_batch(self, outcomes: list[dict[str, Any]], points_written: int) -> list[Written]:
        """Account for one batch of outcome rows and the points it wrote; return the files whose
        items it completed."""
        self.totals.points_written += points_written
        return [f for f in map(self.observe, outcomes) if f is not None]

    def fail_unlisted(self, failures: list[Failure]) -> None:
        """Entries the listing could not carry or read (stage "list"): failed files, counted in
        files_total by the caller."""
        for f in failures:
            self._fail(f.uri, f.stage, f.error)

    def _fail(self, uri: str, stage: str, error: str) -> None:
        self.totals.files_failed += 1
        self._finished_uris.add(uri)
        self.failures.append(Failure(uri, stage, error))

    def close(self, listed: list[str]) -> None:
        """After the stream ends: any file without a full outcome is a failure, never a silent gap."""
        for uri, seen in sorted(self._seen.items()):
            self._fail(uri, "pipeline", f"{uri}: only {seen} of its items came through the pipeline")
        self._seen.clear()
        for uri in listed:
            if uri not in self._finished_uris:
                self._fail(uri, "pipeline", f"{uri}: no outcome came through the pipeline")

    def counts(self) -> Counts:
        """A copy of the driver's totals."""
        return self.totals.copy()

    def driver_counts(self) -> Counts:
        """What only the driver counts: files and points. Stages count their own items, bytes and
        decodes on the progress actor; the driver's share is sent as the difference of two of these."""
        t = self.totals
        return Counts(files_done=t.files_done, files_failed=t.files_failed, files_skipped=t.files_skipped,
                      points_written=t.points_written)

    def failure_reasons(self) -> Counter:
        """Failures grouped by stage and reason (for the summary table)."""
        return Counter((f.stage, _reason(f.error, f.uri)) for f in self.failures)

    def write(self, path: Path) -> None:
        """The full ledger as JSON lines (the status keeps only 10 samples), written whole or not at
        all (a temporary file renamed over it). Raises OSError when it cannot be written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w") as f:
                for failure in self.failures:
                    f.write(json.dumps(asdict(failure)) + "\n")
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def _reason(error: str, uri: str) -> str:
    """The whole error without its file's name, on one line, bounded like an extractor's failure
    reason (a traceback must not flood the table)."""
    text = error[len(uri) + 2:] if error.startswith(uri + ": ") else error
    return ExtractorFailure("", text).bounded().reason
