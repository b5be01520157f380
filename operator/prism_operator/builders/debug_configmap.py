"""The ConfigMap `<job>-debug`: what a job that ended with failures leaves for debugging once its
RayCluster is gone. Pure: a digest of the driver log in, a plain dict out (and back, for status).

    data:
      failures.jsonl        one failed file per line, {"uri", "stage", "error"}, in the driver's order:
                            the `PRISM_FAILURE {json}` lines the driver prints (prism_pipeline.runner)
      driver-log-tail.txt   the log's last TAIL_LINES lines (colours stripped, long lines clipped)
    annotations:            how many failed files the log listed, when and from which Ray job it was
                            saved, and what was cut to fit

A ConfigMap holds at most 1 MiB; both keys together stay under 640 KiB whatever the log holds.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import asdict

from prism_api import ExtractionJob
from prism_api.conventions import DOMAIN
from prism_api.failed_file import FAILURE_LINE_PREFIX, FailedFile
from prism_api.job_status import DebugRecord

from .labels import child_metadata

FAILURES_KEY, TAIL_KEY = "failures.jsonl", "driver-log-tail.txt"
FAILED_FILES_ANNOTATION = f"{DOMAIN}/failed-files"
SAVED_TIME_ANNOTATION = f"{DOMAIN}/saved-time"
RAY_JOB_ANNOTATION = f"{DOMAIN}/ray-job"
CUT_ANNOTATION = f"{DOMAIN}/cut"
TAIL_LINES = 200
# Bounds: the two keys stay under 640 KiB of the ConfigMap's 1 MiB.
FAILURES_MAX_BYTES = 384 * 1024
TAIL_MAX_BYTES = 256 * 1024
TAIL_LINE_MAX_CHARS = 1000
# A line is kept up to this many characters while the log streams by (a PRISM_FAILURE line is one failed
# file: its error is rarely more than a few KiB); the rest of a longer line is counted, not kept.
LINE_MAX_CHARS = 64 * 1024

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Control characters other than tab (terminal escapes, NUL, C1) would garble `kubectl get`; a lone
# surrogate (a log that was not UTF-8) is not valid UTF-8 at all.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def debug_config_map_name(job: ExtractionJob) -> str:
    return f"{job.metadata.name}-debug"


def clean(text: str) -> str:
    """Readable, valid UTF-8: colours stripped, control characters and lone surrogates replaced."""
    return _UNPRINTABLE.sub("\ufffd", _ANSI.sub("", text))


def parse_failure(line: str) -> FailedFile | None:
    """A `PRISM_FAILURE {json}` line's failed file (FailedFile.to_line; colours stripped, text
    cleaned, bounded as status bounds it), or None."""
    failed = FailedFile.from_line(_ANSI.sub("", line))
    if failed is None:
        return None
    return FailedFile(clean(failed.uri), clean(failed.stage), clean(failed.error)).bounded()


class DriverLogDigest:
    """What the ConfigMap keeps of a driver log, gathered as the log streams by (memory stays bounded
    whatever its size): the failed files, up to FAILURES_MAX_BYTES, and the last TAIL_LINES lines."""

    def __init__(self) -> None:
        self.lines = 0
        self.failures: list[FailedFile] = []
        self.failures_listed = 0     # PRISM_FAILURE lines seen
        self.failures_unreadable = 0  # ... of which not a failed file's JSON
        self.long_lines = 0
        self._failures_bytes = 0
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._line: list[str] = []
        self._line_chars = 0
        self._line_cut = False

    def feed(self, text: str) -> None:
        *whole, last = text.split("\n")
        for part in whole:
            self._add(part)
            self._end_line()
        self._add(last)

    def finish(self) -> DriverLogDigest:
        """The log ended: a last line without a newline counts too."""
        if self._line_chars or self._line_cut:
            self._end_line()
        return self

    def _add(self, part: str) -> None:
        room = LINE_MAX_CHARS - self._line_chars
        if len(part) > room:
            part, self._line_cut = part[:room], True
        if part:
            self._line.append(part)
            self._line_chars += len(part)

    def _end_line(self) -> None:
        line, cut = "".join(self._line).rstrip("\r"), self._line_cut
        self._line, self._line_chars, self._line_cut = [], 0, False
        self.lines += 1
        if _ANSI.sub("", line).lstrip().startswith(FAILURE_LINE_PREFIX):
            self.failures_listed += 1
            failure = None if cut else parse_failure(line)
            if failure is None:
                self.failures_unreadable += 1
            else:
                size = len(failure_line(failure).encode())
                if self._failures_bytes + size <= FAILURES_MAX_BYTES:
                    self.failures.append(failure)
                    self._failures_bytes += size
        text = clean(line)
        if cut or len(text) > TAIL_LINE_MAX_CHARS:
            self.long_lines += 1
            text = text[:TAIL_LINE_MAX_CHARS] + " [line clipped]"
        self._tail.append(text)

    def tail(self) -> tuple[str, int]:
        """The kept last lines as text (within TAIL_MAX_BYTES), and how many lines that is."""
        kept: list[str] = []
        size = 0
        for line in reversed(self._tail):
            size += len(line.encode()) + 1
            if size > TAIL_MAX_BYTES:
                break
            kept.append(line)
        kept.reverse()
        return "".join(f"{line}\n" for line in kept), len(kept)


def failure_line(failure: FailedFile) -> str:
    return json.dumps(asdict(failure), ensure_ascii=False) + "\n"


def _cut_note(digest: DriverLogDigest, tail_lines: int, read_cut: str) -> str:
    notes = []
    if read_cut:
        notes.append(read_cut)
    dropped = digest.failures_listed - digest.failures_unreadable - len(digest.failures)
    if dropped:
        notes.append(f"{FAILURES_KEY} keeps the first {len(digest.failures)} of {digest.failures_listed} failed "
                     f"files ({FAILURES_MAX_BYTES // 1024} KiB)")
    if digest.failures_unreadable:
        notes.append(f"{digest.failures_unreadable} {FAILURE_LINE_PREFIX.strip()} lines were not a failed file's JSON")
    if digest.lines > tail_lines:
        notes.append(f"{TAIL_KEY} keeps the last {tail_lines} of {digest.lines} lines")
    if digest.long_lines:
        notes.append(f"{digest.long_lines} long lines clipped to {TAIL_LINE_MAX_CHARS} characters")
    return "; ".join(notes)


def build_debug_config_map(job: ExtractionJob, digest: DriverLogDigest, *, ray_job: str, saved_time: str,
                           read_cut: str = "") -> dict:
    """The `<job>-debug` ConfigMap, owned by the ExtractionJob (it goes with the job, not with the
    RayCluster). `read_cut`: why the log was not read to its end ("" when it was)."""
    tail, tail_lines = digest.tail()
    metadata = child_metadata(job, debug_config_map_name(job), "debug")
    metadata["annotations"] = {
        FAILED_FILES_ANNOTATION: str(digest.failures_listed),
        SAVED_TIME_ANNOTATION: saved_time,
        RAY_JOB_ANNOTATION: ray_job,
        CUT_ANNOTATION: _cut_note(digest, tail_lines, read_cut)[:1024],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {FAILURES_KEY: "".join(failure_line(f) for f in digest.failures), TAIL_KEY: tail},
    }


def debug_record(config_map: dict) -> DebugRecord:
    """status.debug for a saved ConfigMap (what build_debug_config_map wrote)."""
    meta = config_map.get("metadata") or {}
    notes = meta.get("annotations") or {}
    try:
        failed = max(int(notes.get(FAILED_FILES_ANNOTATION) or 0), 0)
    except ValueError:
        failed = 0
    return DebugRecord(config_map=meta.get("name"), failed_files=failed,
                       saved_time=notes.get(SAVED_TIME_ANNOTATION) or meta.get("creationTimestamp"),
                       message=(notes.get(CUT_ANNOTATION) or "")[:1024])


def owned_by(obj: dict | None, job: ExtractionJob) -> bool:
    """Whether `obj` is this job's (not a same-named, deleted job's, still being garbage-collected)."""
    if obj is None:
        return False
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return not job.metadata.uid or any(o.get("uid") == job.metadata.uid for o in owners)
