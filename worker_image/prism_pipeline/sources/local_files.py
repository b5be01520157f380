"""Local paths and file:// (a mounted volume): the standard library, no fsspec hop per file."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO

from prism_api.failed_file import FailedFile

from .refs import READ_CHUNK, FileRef, ReadError, SourceError, check_size

LIST_STAGE = "list"  # the failure ledger's stage for entries the listing could not carry or read


def list_local(root: str, uri: str, match: Callable[[str], bool],
               unlisted: Callable[[FailedFile], None] | None = None) -> list[FileRef]:
    """Every file of `iter_local`, in one list."""
    return list(iter_local(root, uri, match, unlisted))


def local_fingerprint(st: os.stat_result) -> str:
    """A local file's version as the listing sees it: size and modification time (ns)."""
    return f"{st.st_size}:{st.st_mtime_ns}"


def iter_local(root: str, uri: str, match: Callable[[str], bool],
               unlisted: Callable[[FailedFile], None] | None = None) -> Iterator[FileRef]:
    """The regular files under `root` that `match` their path relative to it. An entry that cannot
    be carried or listed goes to `unlisted` as a failed file (stage "list") and the listing goes on:
    a file name that is not valid UTF-8 (every uri is text in the pipeline, the sink and the
    ledger), a subfolder this process may not read. Without `unlisted` they are left out. Raises
    SourceError when `root` itself cannot be listed. A generator: files come folder by folder (each
    folder's entries sorted), as they are listed, so a huge tree starts flowing at once."""
    report = unlisted or (lambda failure: None)
    if os.path.isfile(root):
        if match(os.path.basename(root)):
            yield FileRef(root, os.path.getsize(root), local_fingerprint(os.stat(root)))
        return
    if not os.path.isdir(root):
        raise SourceError(f"spec.source.uri: {uri!r} does not exist (resolved to {root}); "
                          "point it at a directory or file that this process can read")

    def on_error(err: OSError) -> None:
        if os.path.normpath(str(err.filename)) == os.path.normpath(root):
            raise SourceError(f"spec.source.uri: cannot list {err.filename}: {err.strerror}; "
                              "check the path's permissions") from err
        folder = printable(str(err.filename)).rstrip("/") + "/"
        report(FailedFile(folder, LIST_STAGE, f"{folder}: cannot list this folder: {err.strerror}; its files "
                          "were not processed; check its permissions"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if not match(rel):
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue  # dangling symlink or a file removed while listing: nothing to read
            if not _is_regular(st.st_mode):
                continue  # sockets, FIFOs, devices: reading them could block forever
            if not _is_utf8(full):
                shown = printable(full)
                report(FailedFile(shown, LIST_STAGE, f"{shown}: the file name is not valid UTF-8 (shown with "
                                  "\\x escapes); rename it to UTF-8 (for example with convmv) to process it"))
                continue
            yield FileRef(full, st.st_size, local_fingerprint(st))


def printable(path: str) -> str:
    """A path as text any report can carry: bytes that are not UTF-8 (decoded by Python as lone
    surrogates) become backslash escapes, b"bad\\xff.txt" -> "bad\\\\xff.txt"."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def read_local(path: str, uri: str, limit: int, sink: Callable[[bytes], None]) -> BinaryIO:
    """The open file, read once in chunks through `sink` (the hash) and left at its start. Never
    more than one chunk is in memory; a file found larger than `limit` raises (oversized)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - the caller owns it (the decoder reads it next)
    except FileNotFoundError as err:
        raise ReadError(f"{uri}: missing (deleted after listing?)") from err
    except PermissionError as err:
        raise ReadError(f"{uri}: permission denied") from err
    except IsADirectoryError as err:
        raise ReadError(f"{uri}: is a directory") from err
    except OSError as err:
        raise ReadError(f"{uri}: {err.strerror or err}") from err
    try:
        st = os.fstat(f.fileno())
        if not _is_regular(st.st_mode):
            raise ReadError(f"{uri}: not a regular file")
        check_size(uri, st.st_size, limit)
        total = 0
        while chunk := f.read(min(READ_CHUNK, limit + 1 - total)):
            total += len(chunk)
            sink(chunk)
            if total > limit:
                break
        check_size(uri, total, limit, at_least=True)  # it grew after listing
        f.seek(0)
        return f
    except OSError as err:
        f.close()
        raise ReadError(f"{uri}: {err.strerror or err}") from err
    except BaseException:
        f.close()
        raise
