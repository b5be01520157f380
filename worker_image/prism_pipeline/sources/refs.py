"""What a listing returns and how sources fail."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileRef:
    """One file to process. `uri` is absolute: s3://bucket/key, gs://bucket/key or a local path."""

    uri: str
    size: int


class SourceError(Exception):
    """The source could not be listed; the message names spec.source.uri and the fix."""


class ReadError(Exception):
    """One file could not be fetched (timeout, missing, permission, oversized)."""
