"""What a listing returns and how sources fail."""

from __future__ import annotations

from dataclasses import dataclass

# Files are read in pieces of this size (hashed and spooled as they come), never whole.
READ_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileRef:
    """One file to process. `uri` is absolute: s3://bucket/key, gs://bucket/key or a local path.
    `fingerprint` is what the listing says about the file's version without reading it (local: size
    and modification time in ns; S3: the ETag; GCS: the generation): an incremental run skips a file
    whose fingerprint and extractors match its record, reading no byte of it. Empty when unknown."""

    uri: str
    size: int
    fingerprint: str = ""


class SourceError(Exception):
    """The source could not be listed; the message names spec.source.uri and the fix."""


class ReadError(Exception):
    """One file could not be fetched (timeout, missing, permission, oversized)."""


def check_size(uri: str, size: int, limit: int, *, at_least: bool = False) -> None:
    """The one size rule (spec.source.maxFileBytes), applied to the listed size before a fetch and
    to what a fetch returned (a source's listing can be stale or wrong). `at_least`: `size` is what
    a read capped at limit + 1 bytes returned, so the file is at least that large."""
    if size > limit:
        amount = f"at least {size}" if at_least else str(size)
        raise ReadError(f"{uri}: oversized: {amount} bytes > spec.source.maxFileBytes={limit}; "
                        "raise maxFileBytes or exclude the file")
