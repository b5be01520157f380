"""One file the pipeline could not process, as every report of it carries it (the progress
endpoint's failure samples, the verdict line, the failure ledger, and the `PRISM_FAILURE {json}`
line the driver prints for each, which the operator reads back from the driver log into the job's
`<job>-debug` ConfigMap). Standard library only."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

MAX_URI_CHARS, MAX_STAGE_CHARS, MAX_ERROR_CHARS = 2048, 64, 1024
MAX_FAILURE_SAMPLES = 10  # samples in a report and in the ExtractionJob's status.failures
FAILURE_LINE_PREFIX = "PRISM_FAILURE "


@dataclass(frozen=True)
class FailedFile:
    """One file the pipeline could not process: where it failed (read, decode, an extractor's name,
    or pipeline) and why. The driver's failure ledger holds all of them; reports carry a sample."""

    uri: str
    stage: str
    error: str

    def bounded(self, uri_chars: int = MAX_URI_CHARS, error_chars: int = MAX_ERROR_CHARS) -> FailedFile:
        return FailedFile(self.uri[:uri_chars], self.stage[:MAX_STAGE_CHARS], self.error[:error_chars])

    def to_line(self) -> str:
        """The driver log's line for this failure (one line: JSON escapes newlines)."""
        return FAILURE_LINE_PREFIX + json.dumps({"uri": self.uri, "stage": self.stage, "error": self.error})

    @classmethod
    def from_line(cls, line: str) -> FailedFile | None:
        """The failure a `to_line` line names (surrounding whitespace ignored), or None for any other line."""
        line = line.strip()
        if not line.startswith(FAILURE_LINE_PREFIX):
            return None
        try:
            data = json.loads(line[len(FAILURE_LINE_PREFIX):])
        except ValueError:
            return None
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in names):
            return None
        return cls(**{k: data[k] for k in names})
