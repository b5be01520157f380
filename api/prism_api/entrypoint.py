"""The RayJob entrypoint and the pipeline's outcome: what the operator writes and the driver reads,
and what the driver reports back. One writer and one parser each (round-trip tested).

The job document travels as `--job <base64url(zlib(JSON))>`: no shell pass between the RayJob and
the driver (the submitter's `bash -c`, `ray job submit`'s re-joining, Ray's `/bin/sh`) acts on
base64url, and compression keeps large specs well under Linux's 128 KiB limit on one argument
(MAX_ARG_STRLEN), past which the submitter fails with "Argument list too long".

The outcome is the pipeline's own verdict on a job (for example TooManyFailedFiles), so the
operator is told why a job failed instead of inferring it from counters that may have died with
the driver. The driver serves it on the progress endpoint (`prism_pipeline_outcome{outcome=...}`)
and prints it as the last line of its log (`OUTCOME_MARKER {...}`), which Ray keeps in the job's
failure message and KubeRay copies into the RayJob's `status.message`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass
from enum import StrEnum

JOB_ARG = "--job"
ATTEMPT_ARG = "--attempt"
PROGRESS_PORT_ARG = "--progress-port"
# An encoded document above this is refused before a RayJob is created (the submitter's bash -c
# command line also carries the rest of the entrypoint and `ray job submit`'s own options).
MAX_ENCODED_BYTES = 96 * 1024
# A decoded document above this is refused by the driver (a zlib bomb is not a job).
MAX_DECODED_BYTES = 16 * 1024 * 1024

OUTCOME_MARKER = "PRISM_OUTCOME"


class EntrypointError(ValueError):
    """The job document cannot be encoded (too large) or decoded (corrupt)."""


def encode_document(document: dict) -> str:
    raw = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    encoded = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii").rstrip("=")
    if len(encoded) > MAX_ENCODED_BYTES:
        raise EntrypointError(
            f"the job document is {len(raw)} bytes ({len(encoded)} encoded), above the entrypoint limit of "
            f"{MAX_ENCODED_BYTES} encoded bytes; shorten extractor options or split the job")
    return encoded


def decode_document(encoded: str) -> dict:
    try:
        packed = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_DECODED_BYTES + 1)
        if len(raw) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
            raise EntrypointError(f"{JOB_ARG}: the document inflates above {MAX_DECODED_BYTES} bytes")
        document = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        if isinstance(exc, EntrypointError):
            raise
        raise EntrypointError(f"{JOB_ARG}: not a job document written by the operator: {exc}") from None
    if not isinstance(document, dict):
        raise EntrypointError(f"{JOB_ARG}: expected a mapping, got {type(document).__name__}")
    return document


def build_entrypoint(document: dict, attempt: int, progress_port: int) -> str:
    """The RayJob's `spec.entrypoint`."""
    return (f"python -m prism_pipeline run {JOB_ARG} {encode_document(document)} "
            f"{ATTEMPT_ARG} {int(attempt)} {PROGRESS_PORT_ARG} {int(progress_port)}")


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
