"""Where the files come from: list on the driver, fetch in read tasks.

Local paths and file:// are read with the standard library (no fsspec hop per file); s3:// and gs://
go through fsspec (s3fs, gcsfs). Listing returns only (uri, size) so the driver never touches file
contents; read tasks call `open_file`, which enforces the per-file timeout and size limit and reads
each file in chunks (hashing it, spooling a remote object to a temporary file), never whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from prism_api import SourceSpec
from prism_api.failed_file import FailedFile
from prism_api.globs import compile_globs

from .local_files import iter_local, read_local
from .refs import FileRef, ReadError, SourceError, check_size
from .remote import filesystem, iter_remote, read_remote

__all__ = ["Fetched", "FileRef", "Listing", "ReadError", "SourceError", "check_size", "compile_globs", "iter_source",
           "list_files", "list_source", "open_file", "read_bytes", "split_uri"]

LISTING_PAGE = 1000  # files per page of a streamed listing (an S3 ListObjectsV2 page holds 1,000 keys)

T = TypeVar("T")

REMOTE_SCHEMES = ("s3", "gs")


@dataclass
class Listing:
    """What a listing (or one page of it) found: the files to process, and the entries it could not
    list (stage "list"): a file whose name is not valid UTF-8 (no uri could carry it through the
    pipeline and the sink), a folder it may not read. Each of those counts as one failed file."""

    refs: list[FileRef]
    failures: list[FailedFile]


def iter_source(source: SourceSpec, page_size: int = LISTING_PAGE) -> Iterator[Listing]:
    """The source's files as they are listed, in pages of at most `page_size` files (a page may also
    carry entries that could not be listed, and may hold no file). Nothing is held beyond one page:
    a million-file source streams in bounded memory. Raises SourceError when the source cannot be
    listed: before the first page, or at any later page (a listing that breaks off mid-way).

    Hidden files and folders (a path part starting with '.': .DS_Store, .git/, ._resource forks)
    are never listed: they are not media, and each would count as a failed file.
    """
    match = compile_globs(source.include, source.exclude)
    scheme, path = split_uri(source.uri)
    failures: list[FailedFile] = []
    found = iter_local(path, source.uri, match, failures.append) if scheme is None else \
        iter_remote(scheme, path, source, match)
    refs: list[FileRef] = []
    for ref in found:
        refs.append(ref)
        if len(refs) >= page_size or len(failures) >= page_size:
            yield Listing(refs, failures)
            refs, failures = [], []
    yield Listing(refs, failures)


def list_source(source: SourceSpec) -> Listing:
    """Every file under `source.uri` that matches include and not exclude, sorted by uri, and the
    entries that could not be listed: `iter_source`'s pages in one Listing (small sources, tools and
    tests; a job streams the pages). Raises SourceError when the source itself cannot be listed."""
    refs: list[FileRef] = []
    failures: list[FailedFile] = []
    for page in iter_source(source):
        refs += page.refs
        failures += page.failures
    return Listing(sorted(refs, key=lambda ref: ref.uri), sorted(failures, key=lambda f: f.uri))


def list_files(source: SourceSpec) -> list[FileRef]:
    """The files of `list_source` (without the entries it could not list)."""
    return list_source(source).refs


@dataclass
class Fetched:
    """One fetched file: `file` is a seekable binary file at its start (the local file itself, or a
    temporary spool of a remote object), `digest` the sha256 of its bytes (preprocess.content_hash's
    value, computed while reading), `size` how many bytes were read. Close it when done."""

    file: BinaryIO
    digest: str
    size: int

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Fetched:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_file(uri: str, source: SourceSpec, size: int | None = None) -> Fetched:
    """One file listed by `list_files`, read once in chunks (hashed on the way), never whole in memory.

    Raises ReadError when the file is missing, unreadable, larger than `source.max_file_bytes`
    or not fetched within `source.read_timeout_seconds`. Passing the listed `size` refuses an
    oversized object before any download (otherwise up to maxFileBytes + 1 bytes are fetched to
    find out). Remote objects are spooled to an anonymous temporary file (local disk).
    """
    limit = source.max_file_bytes
    if size is not None:
        check_size(uri, int(size), limit)
    try:
        scheme, path = split_uri(uri)
        fs = None if scheme is None else filesystem(scheme, source)
    except SourceError as err:  # e.g. gcsfs missing on this worker: each file reports it
        raise ReadError(f"{uri}: {err}") from err
    hasher = hashlib.sha256()  # the algorithm of preprocess.content_hash: incremental skips compare them
    if fs is None:
        f = _with_deadline(lambda: read_local(path, uri, limit, hasher.update), source.read_timeout_seconds, uri)
    else:
        f = _with_deadline(lambda: read_remote(fs, path, uri, limit, hasher.update), source.read_timeout_seconds,
                           uri)
    nbytes = f.seek(0, os.SEEK_END)
    f.seek(0)
    if nbytes > limit:  # the listing may be stale, or the source lie
        f.close()
        check_size(uri, nbytes, limit, at_least=True)
    return Fetched(f, hasher.hexdigest(), nbytes)


def read_bytes(uri: str, source: SourceSpec, size: int | None = None) -> bytes:
    """The whole content of one file (open_file, then read): for small files and tests only; the
    read stage decodes from `open_file`'s file and never holds a file whole."""
    with open_file(uri, source, size) as fetched:
        return fetched.file.read()


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
