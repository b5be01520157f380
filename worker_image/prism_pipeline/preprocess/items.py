"""The item record every modality produces: one fixed set of keys, so a Ray Data block of items
has one schema whatever mix of files it came from."""

from __future__ import annotations

import hashlib
from typing import Any

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
    return hashlib.sha256(data).hexdigest()


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
