"""Stream rows -> Qdrant points, and the compact outcome rows the driver tracks files with.

Point id = uuid5(namespace = the file's content hash, name = the item key): the same bytes at the
same uri give the same ids on every run and retry, so re-runs overwrite and never duplicate.

An item an extractor failed on is written all the same, without that extractor's output, and its
payload names the failed extractors and why (prism_api.point_payload); an upsert replaces the whole
point, so a later run where they succeed clears the marking.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from prism_api import point_payload as PP
from prism_api.point_payload import ExtractorFailure
from prism_pipeline import rows as R

POSITION_FIELDS = PP.POSITION_FIELDS
MAX_TEXT_PAYLOAD = 4000  # chars of a text item kept in the payload, for search results


def point_id(content_hash: str, key: str) -> str:
    return str(uuid.uuid5(uuid.UUID(hex=content_hash[:32]), key))


def payload_of(row: dict[str, Any], payload_names: set[str], versions: dict[str, str]) -> dict[str, Any]:
    """docs/design.md §4: source uri, modality, position, content hash, extractor outputs, model versions."""
    payload: dict[str, Any] = {
        PP.URI: row["uri"], PP.KEY: row["key"], PP.MODALITY: row["modality"],
        PP.FILE_MODALITY: row.get("file_modality"), PP.CONTENT_HASH: row["content_hash"],
    }
    for f in POSITION_FIELDS:
        if row.get(f) is not None:
            payload[f] = _plain(row[f])
    if row.get("text"):
        payload[PP.TEXT] = row["text"][:MAX_TEXT_PAYLOAD]
    for name, value in row["outputs"].items():
        if name in payload_names:
            payload[name] = _plain(value)
    payload[PP.MODELS] = {name: versions[name] for name in row["outputs"] if name in versions}
    failed, other = extractor_failures(row, versions)
    payload.update(PP.failure_fields(failed))
    if other:  # e.g. a decoder that broke after the file's last item: its file fails in the ledger
        payload[PP.ERRORS] = other
    return payload


def extractor_failures(row: dict[str, Any], extractors: Any) -> tuple[list[ExtractorFailure], list[dict[str, str]]]:
    """The row's errors split into the failures of the extractors named in `extractors` (their
    reasons without the item key the ledger's copy starts with) and the errors of other stages."""
    failed, other = [], []
    for err in row["errors"]:
        if err["stage"] in extractors:
            reason = err["error"].removeprefix(f"{row['key']}: ")
            failed.append(ExtractorFailure(err["stage"], reason))
        else:
            other.append(err)
    return failed, other


def to_point(row: dict[str, Any], vector_names: set[str], payload_names: set[str], versions: dict[str, str]):
    from qdrant_client import models as qm

    vectors = {name: np.asarray(v, dtype=np.float32).tolist()
               for name, v in row["outputs"].items() if name in vector_names}
    return qm.PointStruct(id=point_id(row["content_hash"], row["key"]), vector=vectors,
                          payload=payload_of(row, payload_names, versions))


def outcome(row: dict[str, Any], point: Any = None) -> dict[str, Any]:
    """What the driver needs about a row once its point is built: no pixels, no samples."""
    return {
        "uri": row["uri"], "key": row["key"], "status": row["status"], "content_hash": row.get("content_hash"),
        "file_items": row.get("file_items", 0), "bytes_read": row.get("bytes_read", 0),
        "decoded": row.get("decoded", False), "errors": row["errors"], "processed": sorted(row["outputs"]),
        "point": point,
    }


def rows_to_outcomes(rows: list[dict[str, Any]], vector_names: set[str], payload_names: set[str],
                     versions: dict[str, str], with_points: bool) -> tuple[list[dict[str, Any]], list[Any]]:
    """Outcome rows, and the points of the item rows (attached to the outcomes if `with_points`)."""
    outs, points = [], []
    for row in rows:
        point = to_point(row, vector_names, payload_names, versions) if row["status"] == R.ITEM else None
        if point is not None:
            points.append(point)
        outs.append(outcome(row, point if with_points else None))
    return outs, points


def _plain(value: Any) -> Any:
    """JSON-safe payload values (numpy scalars and arrays from extractors become Python values)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
