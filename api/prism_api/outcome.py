"""The pipeline's verdict on one attempt, in its own words (for example TooManyFailedFiles), so the
operator is told why a job failed instead of inferring it from counters that may have died with
the driver.

The driver serves it on the progress endpoint (progress_report.OUTCOME) and prints it as the last
line of its log (`PRISM_OUTCOME {...}`), which Ray keeps in the job's failure message and KubeRay
copies into the RayJob's `status.message`; the operator reads whichever it gets. The line also
carries how many files failed and a few of them (shorter than the endpoint's samples, so the line
stays well inside the log tail Ray keeps): when the endpoint was never readable (another job's
driver held the port on a shared cluster) or the driver was gone before the operator's next read,
the ExtractionJob still names the files that failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from .failed_file import MAX_FAILURE_SAMPLES, FailedFile

OUTCOME_MARKER = "PRISM_OUTCOME"
# The verdict line's own bounds, well inside the 20,000 characters of log tail Ray keeps.
LINE_MESSAGE_CHARS, LINE_URI_CHARS, LINE_ERROR_CHARS, MAX_LINE_CHARS = 2000, 400, 200, 12_000


class Outcome(StrEnum):
    """How one attempt of the pipeline ended, in its own words."""

    SUCCEEDED = "Succeeded"
    TOO_MANY_FAILED_FILES = "TooManyFailedFiles"  # above failurePolicy.maxFailedFileRatio: retrying won't help
    INVALID_SPEC = "InvalidSpec"                  # the driver refused the document: retrying won't help
    FAILED = "Failed"                             # anything else (crash, stall, sink down): may be retried

    def retryable(self) -> bool:
        return self is Outcome.FAILED


@dataclass(frozen=True)
class OutcomeReport:
    outcome: Outcome
    message: str = ""
    files_failed: int = 0                   # every file in the failure ledger
    failures: tuple[FailedFile, ...] = ()   # a sample of them (at most MAX_FAILURE_SAMPLES on the line)

    def to_line(self) -> str:
        """One line of at most MAX_LINE_CHARS (escaped non-ASCII text takes up to 6 characters per
        character): fewer samples, then a shorter message, when the full line would be longer."""
        for samples, message_chars in ((MAX_FAILURE_SAMPLES, LINE_MESSAGE_CHARS), (3, LINE_MESSAGE_CHARS),
                                       (1, 500), (0, 300)):
            line = self._line(samples, message_chars)
            if len(line) <= MAX_LINE_CHARS:
                break
        return line

    def _line(self, samples: int, message_chars: int) -> str:
        data = {"outcome": self.outcome.value, "message": self.message[:message_chars]}
        if self.files_failed or self.failures:
            data["filesFailed"] = max(self.files_failed, len(self.failures))
            data["failures"] = [[f.uri, f.stage, f.error] for f in
                                (f.bounded(LINE_URI_CHARS, LINE_ERROR_CHARS) for f in self.failures[:samples])]
        # ASCII only: a non-UTF-8 file name's surrogate escapes stay printable on any stdout.
        return f"{OUTCOME_MARKER} " + json.dumps(data, sort_keys=True, ensure_ascii=True)

    @classmethod
    def from_text(cls, text: str) -> OutcomeReport | None:
        """The last outcome line in `text` (a driver log, or a RayJob's status.message), if any."""
        found = None
        for match in _OUTCOME_LINE.finditer(text or ""):
            try:
                data = json.loads(match.group(1))
                samples = tuple(FailedFile(str(uri), str(stage), str(error)).bounded()
                                for uri, stage, error in (data.get("failures") or [])[:MAX_FAILURE_SAMPLES])
                found = cls(Outcome(data["outcome"]), str(data.get("message", "")),
                            max(int(data.get("filesFailed") or 0), len(samples)), samples)
            except (ValueError, KeyError, TypeError):
                continue
        return found


_OUTCOME_LINE = re.compile(re.escape(OUTCOME_MARKER) + r" (\{[^\n]*\})")
