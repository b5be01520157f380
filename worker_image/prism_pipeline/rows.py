"""How items travel between Ray Data stages.

A stream row is {uri, key, status, row}: three plain strings Arrow types the same in every block,
and `row`, the pickled item (image/audio arrays, text, offsets, extractor outputs, errors). Items mix
images of any shape with None, floats with None and payloads of any JSON shape; letting Arrow infer
those per block makes blocks that cannot be concatenated (a tensor column in one block, nulls in the
next). Pickling costs a copy per stage, small next to any model call.

`status` says what a row is:
- "item": a decoded item (frame, image, audio chunk, text chunk);
- "failed": a file that could not be read or decoded (ledger entry, no point);
- "skipped": a file `incremental` found already written (no point);
- "empty": a file that decoded to no items (done, no point);
- "gap": an item its decoder announced but could not produce (a video whose stream breaks after
  some frames): no data and no point, but it stands in for the missing item so the file completes.

Items stream out of the read stage as they are decoded, never a whole file at once, and Ray Data
may reorder them, so every item row carries `file_items`: how many item and gap rows its file has.
Decoders announce that number before their first item (preprocess.DecodedFile.count); the driver
(ledger.FileTracker) counts a file's rows until it reaches it. A file's gap rows fill the shortfall
when the decoder delivers less, and the first gap carries the error when one cut the file short.
Every file yields at least one row, so the driver sees every file's outcome in the stream.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

ITEM, FAILED, SKIPPED, EMPTY, GAP = "item", "failed", "skipped", "empty", "gap"
COLUMNS = ("uri", "key", "status", "row")


def file_marker(uri: str, status: str, *, content_hash: str | None = None, stage: str | None = None,
                error: str | None = None, bytes_read: int = 0, decoded: bool = False) -> dict[str, Any]:
    """The single row standing for a file that produces no items."""
    return {
        "key": uri, "uri": uri, "status": status, "content_hash": content_hash, "modality": None,
        "file_items": 0, "bytes_read": bytes_read, "decoded": decoded, "outputs": {},
        "errors": [{"stage": stage, "error": error}] if error else [],
    }


def gap_row(uri: str, content_hash: str, file_items: int, *, error: dict[str, str] | None = None,
            bytes_read: int = 0, decoded: bool = False) -> dict[str, Any]:
    """A row standing for one announced item the decoder did not produce (see "gap" above)."""
    return {
        "key": uri, "uri": uri, "status": GAP, "content_hash": content_hash, "modality": None,
        "file_items": file_items, "bytes_read": bytes_read, "decoded": decoded, "outputs": {},
        "errors": [error] if error else [],
    }


def to_batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows -> a Ray Data numpy batch with the stream's fixed columns."""
    return {
        "uri": np.array([r["uri"] for r in rows], dtype=object),
        "key": np.array([r["key"] for r in rows], dtype=object),
        "status": np.array([r["status"] for r in rows], dtype=object),
        "row": np.array([pickle.dumps(r, protocol=5) for r in rows], dtype=object),
    }


def from_batch(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [pickle.loads(b) for b in batch["row"]]


def empty_batch() -> dict[str, np.ndarray]:
    return {c: np.array([], dtype=object) for c in COLUMNS}
