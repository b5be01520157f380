"""Where the files come from: list on the driver, fetch in read tasks.

Local paths and file:// are read with the standard library (no fsspec hop per file); s3:// and gs://
go through fsspec (s3fs, gcsfs). Listing returns only (uri, size) so the driver never touches file
contents; read tasks call `read_bytes`, which enforces the per-file timeout and size limit.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import TypeVar

from prism_api import SourceSpec

from .globs import compile_globs
from .local_files import list_local, read_local
from .refs import FileRef, ReadError, SourceError, check_size
from .remote import filesystem, list_remote, read_remote

__all__ = ["FileRef", "ReadError", "SourceError", "check_size", "compile_globs", "list_files", "read_bytes", "split_uri"]

T = TypeVar("T")

REMOTE_SCHEMES = ("s3", "gs")


def list_files(source: SourceSpec) -> list[FileRef]:
    """Every file under `source.uri` that matches include and not exclude, sorted by uri.

    Hidden files and folders (a path part starting with '.': .DS_Store, .git/, ._resource forks)
    are never listed: they are not media, and each would count as a failed file.
    """
    match = compile_globs(source.include, source.exclude)
    scheme, path = split_uri(source.uri)
    if scheme is None:
        refs = list_local(path, source.uri, match)
    else:
        refs = list_remote(scheme, path, source, match)
    return sorted(refs, key=lambda ref: ref.uri)


def read_bytes(uri: str, source: SourceSpec, size: int | None = None) -> bytes:
    """The whole content of one file listed by `list_files`.

    Raises ReadError when the file is missing, unreadable, larger than `source.max_file_bytes`
    or not fetched within `source.read_timeout_seconds`. Passing the listed `size` refuses an
    oversized object before any download (otherwise up to maxFileBytes + 1 bytes are fetched to
    find out, since a remote read makes one request and no HEAD).
    """
    limit = source.max_file_bytes
    if size is not None:
        check_size(uri, int(size), limit)
    try:
        scheme, path = split_uri(uri)
        fs = None if scheme is None else filesystem(scheme, source)
    except SourceError as err:  # e.g. gcsfs missing on this worker: each file reports it
        raise ReadError(f"{uri}: {err}") from err
    if fs is None:
        data = _with_deadline(lambda: read_local(path, uri, limit), source.read_timeout_seconds, uri)
    else:
        data = _with_deadline(lambda: read_remote(fs, path, uri, limit), source.read_timeout_seconds, uri)
    check_size(uri, len(data), limit, at_least=True)  # the listing may be stale, or the source lie
    return data


def split_uri(uri: str) -> tuple[str | None, str]:
    """(scheme, path): scheme None for local files (plain paths and file://, made absolute);
    remote paths are 'bucket/key' without a trailing slash."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", uri)
    if not m:
        return None, os.path.abspath(os.path.expanduser(uri))
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        return None, os.path.abspath(rest if rest.startswith("/") else "/" + rest)
    if scheme == "s3a":
        scheme = "s3"
    if scheme not in REMOTE_SCHEMES:
        raise SourceError(f"spec.source.uri: unsupported scheme '{scheme}://' in {uri!r}; "
                          "use s3://, gs://, file:// or a local path")
    return scheme, rest.rstrip("/")


def _with_deadline(fn: Callable[[], T], seconds: float, uri: str) -> T:
    """Run `fn` in a daemon thread and give up after `seconds`: a hung NFS mount or a stalled
    connection then fails this one file instead of stalling the read task forever."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller's thread below
            box["error"] = err

    worker = threading.Thread(target=target, name="prism-read", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ReadError(f"{uri}: timed out after {seconds:g}s (spec.source.readTimeoutSeconds); "
                        "raise it for large files or slow storage")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
