"""One file the pipeline could not process, as every report of it carries it (the progress
endpoint's failure samples, the verdict line, the failure ledger). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

MAX_URI_CHARS, MAX_STAGE_CHARS, MAX_ERROR_CHARS = 2048, 64, 1024
MAX_FAILURE_SAMPLES = 10  # samples in a report and in the ExtractionJob's status.failures


@dataclass(frozen=True)
class FailedFile:
    """One file the pipeline could not process: where it failed (read, decode, an extractor's name,
    or pipeline) and why. The driver's failure ledger holds all of them; reports carry a sample."""

    uri: str
    stage: str
    error: str

    def bounded(self, uri_chars: int = MAX_URI_CHARS, error_chars: int = MAX_ERROR_CHARS) -> FailedFile:
        return FailedFile(self.uri[:uri_chars], self.stage[:MAX_STAGE_CHARS], self.error[:error_chars])
