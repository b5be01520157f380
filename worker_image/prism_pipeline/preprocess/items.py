"""The item record every modality produces: one fixed set of keys, so a Ray Data block of items
has one schema whatever mix of files it came from."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, BinaryIO

ITEM_KEYS = (
    "key", "uri", "content_hash", "file_modality", "modality",
    "image", "audio", "sample_rate", "text",
    "timestamp", "t_end", "frame", "page", "chunk",
)


class DecodeError(Exception):
    """A file that cannot become items: corrupt, truncated, zero bytes or unsupported."""

    def __init__(self, message: str, stage: str = "decode"):
        super().__init__(message)
        self.stage = stage


def content_hash(data: bytes) -> str:
    """sha256 of the bytes; sources.open_file computes the same while it reads a file in chunks."""
    return hashlib.sha256(data).hexdigest()


class Source:
    """The bytes of one file for the decoders: given as bytes, or as an open binary file (the read
    stage's: the local file itself or a spool of a remote object), which is never read whole.
    `open()` gives each reader (an image decoder, one PyAV container per pass) its own position."""

    CHUNK = 1024 * 1024

    def __init__(self, data: bytes | BinaryIO):
        self._data: bytes | None = None
        self._fd: int | None = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._data = bytes(data)
            self.size = len(self._data)
            return
        try:
            fd = data.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # an in-memory file: already in memory
            data.seek(0)
            self._data = data.read()
            self.size = len(self._data)
            return
        self._file = data  # keeps the descriptor open while this Source lives
        self._fd, self.size = fd, data.seek(0, os.SEEK_END)
        data.seek(0)

    def open(self) -> BinaryIO:
        if self._data is not None:
            return io.BytesIO(self._data)
        return io.BufferedReader(_PositionedReader(self._fd, self.size), buffer_size=256 * 1024)  # type: ignore[arg-type]

    def chunks(self):
        """The bytes, CHUNK at a time."""
        with self.open() as f:
            while chunk := f.read(self.CHUNK):
                yield chunk

    def hash(self) -> str:
        if self._data is not None:
            return content_hash(self._data)
        h = hashlib.sha256()
        for chunk in self.chunks():
            h.update(chunk)
        return h.hexdigest()


class _PositionedReader(io.RawIOBase):
    """A read-only view of a file descriptor with its own position (pread), so several readers of
    one open file never move each other's position."""

    def __init__(self, fd: int, size: int):
        self._fd, self._size, self._pos = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self._fd, len(buffer), self._pos)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:  # the descriptor belongs to the Source's file
        super().close()


def make_item(key: str, uri: str, digest: str, file_modality: str, modality: str, **fields: Any) -> dict:
    """An item with every key of ITEM_KEYS; fields not given are None."""
    unknown = set(fields) - set(ITEM_KEYS)
    if unknown:
        raise TypeError(f"unknown item fields: {sorted(unknown)}")
    item = dict.fromkeys(ITEM_KEYS)
    item.update(fields, key=key, uri=uri, content_hash=digest, file_modality=file_modality, modality=modality)
    return item


def time_key(uri: str, start: float, end: float) -> str:
    """Key of an audio chunk, e.g. 'uri#t=30-60'. Rounded to milliseconds so it is stable."""
    return f"{uri}#t={round(start, 3):g}-{round(end, 3):g}"
