"""SearchFilter (the HTTP API's payload conditions) as a Qdrant filter, the same on the embedded
store (qdrant-client local mode) and a server.

- modality: `image`, `audio` and `text` are the item's modality (a photo or a video frame is an
  image item); `video` and `document` the file's (every item of a video, of a PDF or text file).
  Several values: any of them.
- timeRange: a Range on the item's `timestamp` in seconds (frames, audio chunks); items without a
  timestamp (photos, documents) never match.
- page: a document item's page (PDF pages count from 1).
- uriPrefix: MatchPrefix on `uri`, byte-wise and case-sensitive, as keyword matches are. Not
  MatchText: without a full-text index both the server and local mode split the uri and the prefix
  into words and want whole words, so `photos/ca` would not match `photos/cat.png`. A keyword index
  (what Prism creates on `uri`) answers exact values only, so a server scans for the prefix unless
  the index was created with its `prefix` option. A server too old to know MatchPrefix refuses the
  request (400); `search` then drops the condition and keeps, page by page, the hits whose uri
  starts with the prefix, which is exact but reads more candidates.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import models as qm

from prism_api import point_payload as PP
from prism_api.search_service import SearchFilter
from prism_pipeline.sink import SinkWriteError

ITEM_MODALITIES = ("image", "audio", "text")
FILE_MODALITIES = ("video", "document")
# Candidates per page when the prefix is tested here (an old server): limit x OVERFETCH, bounded.
OVERFETCH, PAGE_MIN, PAGE_MAX = 4, 32, 1024


def to_qdrant(where: SearchFilter | None, *, prefix: bool = True) -> qm.Filter | None:
    """The Qdrant filter for `where` (None when it sets nothing); `prefix=False` leaves out the
    uriPrefix condition (then test hits with `starts_with`)."""
    if where is None:
        return None
    must: list[Any] = []
    if where.modality:
        items = [m for m in where.modality if m in ITEM_MODALITIES]
        files = [m for m in where.modality if m in FILE_MODALITIES]
        either = ([qm.FieldCondition(key=PP.MODALITY, match=qm.MatchAny(any=items))] if items else []) + \
                 ([qm.FieldCondition(key=PP.FILE_MODALITY, match=qm.MatchAny(any=files))] if files else [])
        must.append(either[0] if len(either) == 1 else qm.Filter(should=either))
    if where.uri_prefix and prefix:
        must.append(qm.FieldCondition(key=PP.URI, match=qm.MatchPrefix(prefix=where.uri_prefix)))
    if where.time_range:
        must.append(qm.FieldCondition(key="timestamp", range=qm.Range(gte=where.time_range.gte,
                                                                      lte=where.time_range.lte)))
    if where.page is not None:
        must.append(qm.FieldCondition(key="page", match=qm.MatchValue(value=where.page)))
    return qm.Filter(must=must) if must else None


def starts_with(payload: dict[str, Any], where: SearchFilter | None) -> bool:
    """Whether a hit's uri starts with the filter's uriPrefix (always true without one)."""
    if where is None or not where.uri_prefix:
        return True
    uri = payload.get(PP.URI)
    return isinstance(uri, str) and uri.startswith(where.uri_prefix)


def search(sink: Any, vector: str, query: list[float], limit: int, where: SearchFilter | None) -> list[Any]:
    """The best `limit` points (sink.Found) meeting `where`, best first."""
    try:
        return sink.search(vector, query, limit, where=to_qdrant(where))
    except SinkWriteError as err:
        if not (where and where.uri_prefix and _refused(err)):
            raise
    return _prefix_by_pages(sink, vector, query, limit, where)


def _refused(err: SinkWriteError) -> bool:
    """A 400 from a server that does not know a condition (an older Qdrant and MatchPrefix)."""
    return getattr(err.__cause__, "status_code", None) in (400, 422)


def _prefix_by_pages(sink: Any, vector: str, query: list[float], limit: int, where: SearchFilter) -> list[Any]:
    rest = to_qdrant(where, prefix=False)
    page = min(PAGE_MAX, max(PAGE_MIN, limit * OVERFETCH))
    kept: list[Any] = []
    offset = 0
    while len(kept) < limit:
        found = sink.search(vector, query, page, where=rest, offset=offset)
        kept += [f for f in found if starts_with(f.payload, where)]
        if len(found) < page:
            break
        offset += page
    return kept[:limit]
