"""The payload keys of a point that readers outside the pipeline rely on: `prism search`, `prism
failed`, the incremental clean-up and users' own Qdrant filters. The pipeline writes them
(prism_pipeline.points); every reader takes the names, the failure fields' writer and parser, and
the filter that finds items to reprocess from here. Standard library only.

Partial results: an item whose extractor failed is still written, with what the other extractors
produced, and says which extractors failed and why:

    failed_extractors: ["digest"]                                  keyword list, payload-indexed
    failure_reasons:   {"digest": "ValueError: cannot digest poison"}  at most MAX_REASON_CHARS each

Both fields are on every point the pipeline writes, empty when every extractor succeeded, so
`is_empty` on FAILED_EXTRACTORS finds the complete points (and points written before these fields
existed), and `match` on it finds the items one extractor failed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

URI = "uri"                              # the source file
KEY = "key"                              # the item: <uri>#<position>
CONTENT_HASH = "content_hash"            # sha256 of the file's bytes (the incremental clean-up filters on it)
FAILED_EXTRACTORS = "failed_extractors"  # names of the extractors that failed on this item, sorted
FAILURE_REASONS = "failure_reasons"      # extractor name -> why it failed

MODALITY, FILE_MODALITY, TEXT, MODELS, ERRORS = "modality", "file_modality", "text", "models", "errors"
POSITION_FIELDS = ("timestamp", "t_end", "frame", "page", "chunk")  # where in the file the item is
# Keys the pipeline itself writes on every point: an extractor's output is written under its name, so
# no extractor may be named like one of them (spec.extractors[].name is checked against this).
RESERVED_KEYS = frozenset({URI, KEY, MODALITY, FILE_MODALITY, CONTENT_HASH, TEXT, MODELS, ERRORS,
                           FAILED_EXTRACTORS, FAILURE_REASONS, *POSITION_FIELDS})

MAX_REASON_CHARS = 300
ELLIPSIS = "..."

# Keyword indexes a Qdrant server collection gets (the embedded store has none; it scans).
KEYWORD_INDEXES = (URI, FAILED_EXTRACTORS)


@dataclass(frozen=True)
class ExtractorFailure:
    """One extractor that failed on one item, and why (bounded: a traceback must not bloat points)."""

    extractor: str
    reason: str

    def bounded(self) -> ExtractorFailure:
        reason = " ".join(self.reason.split())  # one line: it goes into tables and filters' results
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS - len(ELLIPSIS)] + ELLIPSIS
        return ExtractorFailure(self.extractor, reason)


def failure_fields(failures: Iterable[ExtractorFailure]) -> dict[str, Any]:
    """The payload fields for an item's failed extractors (the first reason per extractor wins);
    empty fields when there are none."""
    reasons: dict[str, str] = {}
    for f in failures:
        reasons.setdefault(f.extractor, f.bounded().reason)
    return {FAILED_EXTRACTORS: sorted(reasons), FAILURE_REASONS: {name: reasons[name] for name in sorted(reasons)}}


def failures_of(payload: Mapping[str, Any]) -> list[ExtractorFailure]:
    """The failed extractors a point's payload records, in name order; [] for a complete point or
    one written before these fields existed. An extractor without a reason reads as reason ""."""
    names = payload.get(FAILED_EXTRACTORS) or []
    reasons = payload.get(FAILURE_REASONS) or {}
    if not isinstance(names, list) or not isinstance(reasons, dict):
        return []
    return [ExtractorFailure(str(n), str(reasons.get(n, ""))) for n in sorted(set(names))]


def failed_filter(extractor: str | None = None) -> dict[str, Any]:
    """The Qdrant filter (REST JSON) for the points to reprocess: those `extractor` failed on, or
    those any extractor failed on. The same JSON works in a user's own `POST .../points/scroll`."""
    if extractor:
        return {"must": [{"key": FAILED_EXTRACTORS, "match": {"value": extractor}}]}
    return {"must_not": [{"is_empty": {"key": FAILED_EXTRACTORS}}]}
