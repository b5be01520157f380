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
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from prism_api.point_payload import ExtractorFailure
from prism_api.progress_report import Counts, FailedFile
from prism_pipeline import rows as R

# A failed file: uri, stage (read, decode, an extractor name, or pipeline) and error.
Failure = FailedFile

FAILURE_SAMPLES = 100     # failed files kept in memory (the summary shows 10, the status 10)
MAX_REASONS = 1000        # distinct (stage, reason) pairs counted for the summary table; more go to "other"


class Pending(NamedTuple):
    """What the driver knows about a file it sent into the stream: its listing fingerprint, the hash
    an earlier run recorded for it ("" when none) and that record's item count. Held only until the
    file's outcome comes back."""

    fingerprint: str = ""
    recorded_hash: str = ""
    recorded_items: int = 0


NOT_RECORDED = Pending()


class Written(NamedTuple):
    """A file all of whose items came through the stream, so its points are written: the driver
    records it for incremental runs. `failed_stage` says where it failed if it did (an extractor that
    failed on some of its items, whose points lack that output; a decoder that stopped early); a
    file recorded with one is not complete, and the next run processes it again. `fingerprint` is
    its listing fingerprint, `recorded_hash` the hash an earlier run recorded (its points go when
    the content changed)."""

    uri: str
    content_hash: str
    items: int
    failed_stage: str = ""
    fingerprint: str = ""
    recorded_hash: str = ""


@dataclass
class FileTracker:
    """The driver's account, in the progress report's vocabulary (`totals`), plus the failure ledger.

    Its memory is bounded by the files in the stream, not the job's size: a file is held (`expect`)
    from the moment it is sent until its outcome comes back; the failure ledger is spilled to an
    anonymous temporary file as failures happen (`iter_failures`, `write`), and only the first
    FAILURE_SAMPLES failures and the counts per reason stay in memory. Thread-safe: the listing
    thread accounts skipped and unlisted files while the driver's thread accounts the stream."""

    files_total: int = 0
    totals: Counts = field(default_factory=Counts)
    samples: list[Failure] = field(default_factory=list)
    _pending: dict[str, Pending] = field(default_factory=dict)
    _seen: dict[str, int] = field(default_factory=dict)
    _first_error: dict[str, dict[str, str]] = field(default_factory=dict)
    _reasons: Counter = field(default_factory=Counter)
    _fresh: list[Failure] = field(default_factory=list)
    _spill: IO[str] | None = None
    _sent: Counts = field(default_factory=Counts)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- what the listing says ----------------------------------------------------------------------

    def listed(self, files: int, unlisted: list[Failure] = ()) -> None:
        """A page of the listing: `files` more files, and entries it could not carry or read (stage
        "list"), each a failed file."""
        with self._lock:
            self.files_total += files + len(unlisted)
            for f in unlisted:
                self._fail(f.uri, f.stage, f.error)

    def expect(self, uri: str, pending: Pending = NOT_RECORDED) -> None:
        """`uri` goes into the stream: it must come back with an outcome (`close` fails it otherwise)."""
        with self._lock:
            self._pending[uri] = pending

    def skip_unchanged(self, files: int) -> None:
        """Files the listing alone showed unchanged since their record: skipped, no byte read."""
        with self._lock:
            self.totals.files_skipped += files

    # -- what the stream says ------------------------------------------------------------------------

    def observe(self, o: dict[str, Any]) -> Written | None:
        """Account for one outcome row; return the file when the row completes its items (that
        file is recorded for incremental runs, with the stage it failed at if it failed), or when
        the read stage skipped it on its content hash but its listing fingerprint changed (then only
        its record is rewritten, with the new fingerprint)."""
        with self._lock:
            return self._observe(o)

    def _observe(self, o: dict[str, Any]) -> Written | None:
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
            pending = self._pending.pop(uri, NOT_RECORDED)
            if pending.fingerprint and o.get("content_hash"):  # same bytes, new fingerprint (touched, copied)
                return Written(uri, o["content_hash"], pending.recorded_items, "", pending.fingerprint,
                               pending.recorded_hash)
            return None
        if status == R.EMPTY:
            t.files_done += 1
            return self._written(uri, o["content_hash"], 0)
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
            written = self._written(uri, o["content_hash"], o["file_items"], err["stage"])
            self._fail(uri, err["stage"], err["error"])
            return written
        t.files_done += 1
        return self._written(uri, o["content_hash"], o["file_items"])

    def _written(self, uri: str, content_hash: str, items: int, failed_stage: str = "") -> Written:
        pending = self._pending.pop(uri, NOT_RECORDED)
        return Written(uri, content_hash, items, failed_stage, pending.fingerprint, pending.recorded_hash)

    def observe_batch(self, outcomes: list[dict[str, Any]], points_written: int) -> list[Written]:
        """Account for one batch of outcome rows and the points it wrote; return the files whose
        items it completed."""
        with self._lock:
            self.totals.points_written += points_written
            return [f for f in map(self._observe, outcomes) if f is not None]

    def close(self) -> None:
        """After the stream ends: any file sent into it (`expect`) without a full outcome is a failure,
        never a silent gap."""
        with self._lock:
            for uri, seen in sorted(self._seen.items()):
                self._pending.pop(uri, None)
                self._fail(uri, "pipeline", f"{uri}: only {seen} of its items came through the pipeline")
            self._seen.clear()
            for uri in sorted(self._pending):
                self._fail(uri, "pipeline", f"{uri}: no outcome came through the pipeline")
            self._pending.clear()

    @property
    def in_stream(self) -> int:
        """Files sent into the stream whose outcome has not come back yet."""
        with self._lock:
            return len(self._pending)

    # -- the failure ledger ----------------------------------------------------------------------------

    def _fail(self, uri: str, stage: str, error: str) -> None:
        self._pending.pop(uri, None)
        self.totals.files_failed += 1
        failure = Failure(uri, stage, error)
        if len(self.samples) < FAILURE_SAMPLES:
            self.samples.append(failure)
        self._fresh.append(failure)
        key = (stage, _reason(error, uri))
        if key in self._reasons or len(self._reasons) < MAX_REASONS:
            self._reasons[key] += 1
        else:
            self._reasons[(stage, "other reasons (the failure ledger has each)")] += 1
        if self._spill is None:
            self._spill = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="prism-ledger-")  # noqa: SIM115
        self._spill.write(json.dumps(asdict(failure)) + "\n")

    def progress_delta(self) -> tuple[Counts, list[Failure]]:
        """What the progress actor has not been sent yet: the driver's counts since the last call and
        the failures since then. The listing thread and the stream's thread both send through this,
        so nothing is sent twice."""
        with self._lock:
            now = self.driver_counts()
            delta, self._sent = now - self._sent, now
            fresh, self._fresh = self._fresh, []
            return delta, fresh

    def iter_failures(self) -> Iterator[Failure]:
        """Every failed file so far, in the order they failed, read back from the spilled ledger."""
        with self._lock:
            if self._spill is None:
                return iter(())
            self._spill.flush()
            self._spill.seek(0)
            lines = self._spill.readlines() if self.totals.files_failed <= FAILURE_SAMPLES else None
            self._spill.seek(0, os.SEEK_END)
        if lines is not None:
            return iter([Failure(**json.loads(line)) for line in lines])
        return self._read_spill()

    def _read_spill(self) -> Iterator[Failure]:
        position = 0
        while True:
            with self._lock:
                self._spill.seek(position)
                line = self._spill.readline()
                position = self._spill.tell()
                self._spill.seek(0, os.SEEK_END)
            if not line:
                return
            yield Failure(**json.loads(line))

    @property
    def failures(self) -> list[Failure]:
        """Every failed file, read back from the ledger (the whole list: for small jobs and tests;
        large ones use `iter_failures`, `samples` and `failure_reasons`)."""
        return list(self.iter_failures())

    def counts(self) -> Counts:
        """A copy of the driver's totals."""
        with self._lock:
            return self.totals.copy()

    def driver_counts(self) -> Counts:
        """What only the driver counts: files and points. Stages count their own items, bytes and
        decodes on the progress actor; the driver's share is sent as the difference of two of these."""
        with self._lock:
            t = self.totals
            return Counts(files_done=t.files_done, files_failed=t.files_failed, files_skipped=t.files_skipped,
                          points_written=t.points_written)

    def failure_reasons(self) -> Counter:
        """Failures grouped by stage and reason (for the summary table)."""
        with self._lock:
            return Counter(self._reasons)

    def write(self, path: Path) -> None:
        """The full ledger as JSON lines (the status keeps only 10 samples), written whole or not at
        all (a temporary file renamed over it). Raises OSError when it cannot be written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("w") as f:
                for failure in self.iter_failures():
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
