"""Local paths and file:// (a mounted volume): the standard library, no fsspec hop per file."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from .refs import FileRef, ReadError, SourceError, check_size


def list_local(root: str, uri: str, match: Callable[[str], bool]) -> list[FileRef]:
    if os.path.isfile(root):
        return [FileRef(root, os.path.getsize(root))] if match(os.path.basename(root)) else []
    if not os.path.isdir(root):
        raise SourceError(f"spec.source.uri: {uri!r} does not exist (resolved to {root}); "
                          "point it at a directory or file that this process can read")
    refs: list[FileRef] = []

    def on_error(err: OSError) -> None:
        raise SourceError(f"spec.source.uri: cannot list {err.filename}: {err.strerror}; "
                          "check the path's permissions") from err

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
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
            refs.append(FileRef(full, st.st_size))
    return refs


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def read_local(path: str, uri: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            if not _is_regular(os.fstat(f.fileno()).st_mode):
                raise ReadError(f"{uri}: not a regular file")
            check_size(uri, os.fstat(f.fileno()).st_size, limit)
            return f.read(limit + 1)
    except FileNotFoundError as err:
        raise ReadError(f"{uri}: missing (deleted after listing?)") from err
    except PermissionError as err:
        raise ReadError(f"{uri}: permission denied") from err
    except IsADirectoryError as err:
        raise ReadError(f"{uri}: is a directory") from err
    except OSError as err:
        raise ReadError(f"{uri}: {err.strerror or err}") from err
