"""The pipeline's verdict on one attempt, in its own words (for example TooManyFailedFiles), so the
operator is told why a job failed instead of inferring it from counters that may have died with
the driver.

The driver serves it on the progress endpoint (progress_report.OUTCOME) and prints it as the last
line of its log (`PRISM_OUTCOME {...}`), which Ray keeps in the job's failure message and KubeRay
copies into the RayJob's `status.message`; the operator reads whichever it gets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

OUTCOME_MARKER = "PRISM_OUTCOME"


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

    def to_line(self) -> str:
        return f"{OUTCOME_MARKER} " + json.dumps({"outcome": self.outcome.value, "message": self.message[:2000]},
                                                 sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> OutcomeReport | None:
        """The last outcome line in `text` (a driver log, or a RayJob's status.message), if any."""
        found = None
        for match in _OUTCOME_LINE.finditer(text or ""):
            try:
                data = json.loads(match.group(1))
                found = cls(Outcome(data["outcome"]), str(data.get("message", "")))
            except (ValueError, KeyError, TypeError):
                continue
        return found


_OUTCOME_LINE = re.compile(re.escape(OUTCOME_MARKER) + r" (\{[^\n]*\})")
