"""Search a collection a Prism run wrote, with a text query embedded the way its points were.

The collection's companion records which extractors wrote it (kind, model, version, options); the
query goes through the same extractor, built here at that kind, model and options, so query and
points share one embedding space. `prism search` is this plus argument parsing and a table.
"""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prism_api import point_payload as PP
from prism_api.search_service import SearchFilter
from prism_pipeline.extractors.base import NoTextQuery
from prism_pipeline.sink import Sink, SinkWriteError, StoreBusyError, StoreMissingError
from prism_pipeline.sink.embedded import copy_store

# The kinds a text query can be embedded by, in the order the default vector is chosen.
QUERY_KINDS = ("text-embedding", "image-embedding")


class SearchError(Exception):
    """The search cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class Hit:
    score: float
    uri: str
    key: str    # the item's key: <uri>#<position>
    item: str   # the position part of the key (`chunk=1`, `frame=48`), "-" for a whole file
    text: str   # the item's text payload, if any
    at: float | None = None  # seconds into the file: where the words the query matched were spoken
                             # (the best-matching transcript segment), else the item's timestamp
    excerpt: str = ""        # that transcript segment's words; else the start of `text`
    failed_extractors: tuple[str, ...] = ()  # extractors that failed on the item (partial results)
    page: int | None = None  # a document item's page, where it has one
    modality: str | None = None     # the item's modality: image (photos, frames), audio or text
    timestamp: float | None = None  # seconds into the file (frames, audio chunks)


@dataclass
class SearchResult:
    hits: list[Hit]
    vector: str                                          # the extractor whose vectors were searched
    warnings: list[str] = field(default_factory=list)    # e.g. the query model's version differs


def search(query: str, collection: str, *, vector: str | None = None, limit: int = 5,
           state_dir: str | Path = ".prism", url: str | None = None) -> SearchResult:
    """The best `limit` items of `collection` for `query`, from the embedded store under `state_dir`
    or the Qdrant server at `url`. Raises SearchError."""
    return search_many([query], collection, vector=vector, limit=limit, state_dir=state_dir, url=url)[0]


def search_many(queries: list[str], collection: str, *, vector: str | None = None, limit: int = 5,
                state_dir: str | Path = ".prism", url: str | None = None,
                filter: SearchFilter | None = None) -> list[SearchResult]:  # noqa: A002 - the HTTP API's name
    """search() for several queries with one store opening and one model load (most of a search's
    time is importing and loading the query model); only items meeting `filter` (as POST /search's,
    prism_pipeline.serve.filters)."""
    from prism_pipeline.serve import filters

    results = []
    with open_collection(collection, state_dir=state_dir, url=url) as sink:
        try:
            chosen = choose_vector(sink, collection, vector)
            extractor, warnings = query_extractor(chosen)
            extractor.setup()
            for query in queries:
                found = filters.search(sink, chosen["name"], [float(x) for x in extractor.embed_query(query)],
                                       limit, filter)
                results.append(SearchResult([hit(f.score, f.payload, query) for f in found], chosen["name"],
                                            warnings))
        except (SinkWriteError, NoTextQuery) as err:
            raise SearchError(str(err)) from err
    return results


def open_collection(collection: str, *, state_dir: str | Path = ".prism", url: str | None = None) -> Sink:
    """A read handle on the embedded store under `state_dir` or the server at `url` (close it: it
    holds the embedded store's lock). Raises SearchError when there is no store.

    A store that cannot be written (a read-only mount, another user's files) cannot be locked: the
    embedded client opens its lock file for writing. It is then read from a private copy, removed on
    close; the store itself is left untouched."""
    try:
        return Sink.open_existing(collection, url=url, state_dir=state_dir)
    except StoreMissingError as err:
        raise SearchError(f"no embedded store under {state_dir}; run `prism run job.yaml` first "
                          "(or pass --state-dir)") from err
    except StoreBusyError as err:
        raise SearchError(str(err)) from err
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        return _ReadOnlyCopy.of(collection, Path(state_dir), err)


class _ReadOnlyCopy(Sink):
    """A read handle on a copy of a store this process may not write; close() removes the copy."""

    _copy: Path

    @classmethod
    def of(cls, collection: str, state_dir: Path, why: OSError) -> Sink:
        copy = Path(tempfile.mkdtemp(prefix="prism-search-"))
        try:
            copy_store(state_dir, copy)
            sink = cls.open_existing(collection, state_dir=copy)
        except Exception as err:
            shutil.rmtree(copy, ignore_errors=True)
            raise SearchError(f"the embedded store under {state_dir} is read-only ({why.strerror}) and "
                              f"could not be copied to read it ({type(err).__name__}: {err}); copy the state "
                              "dir somewhere writable and pass --state-dir") from err
        sink._copy = copy
        return sink

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self._copy, ignore_errors=True)


def collection_meta(sink: Sink, collection: str) -> dict[str, Any]:
    """The extractors that wrote `collection` (Sink.meta); SearchError naming the collections there
    when it is not a Prism collection."""
    meta = sink.meta()
    if meta is None:
        names = ", ".join(sink.collections())
        raise SearchError(f"no Prism collection {collection!r} (collections here: {names or 'none'})")
    return meta


def choose_vector(sink: Sink, collection: str, vector: str | None) -> dict[str, Any]:
    """The recorded extractor whose vectors to search: the one named, else the first of QUERY_KINDS."""
    meta = collection_meta(sink, collection)
    vectors = [e for e in meta["extractors"] if e["output"] == "vector"]
    if vector:
        chosen = next((e for e in vectors if e["name"] == vector), None)
        if chosen is None:
            raise SearchError(f"--vector {vector!r}: collection {collection!r} has vectors "
                              f"{', '.join(e['name'] for e in vectors) or 'none'}")
        return chosen
    chosen = next((e for k in QUERY_KINDS for e in vectors if e["kind"] == k), None)
    if chosen is None:
        raise SearchError(f"collection {collection!r} has no text-searchable vector "
                          f"(extractors: {', '.join(e['name'] for e in meta['extractors'])}); use --vector")
    return chosen


def recorded_extractor(recorded: dict[str, Any], gpu: float = 0) -> Any:
    """The extractor as recorded (kind, model, options), not set up yet; `gpu` > 0 puts its model on
    a GPU (a Serve replica's resources). Raises SearchError when it cannot be built here."""
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import ExtractorError, build

    spec = ExtractorSpec.model_validate({"name": recorded["name"], "kind": recorded["kind"],
                                         "model": recorded.get("model"), "options": recorded.get("options") or {},
                                         "resources": {"gpu": gpu}})
    try:
        return build(spec, f"the collection's extractor {recorded['name']!r}")
    except ExtractorError as err:  # e.g. its model is not on this machine
        raise SearchError(str(err)) from err


def query_extractor(recorded: dict[str, Any]) -> tuple[Any, list[str]]:
    """The extractor as recorded (kind, model, options), not set up yet, and a warning when this
    machine's version of it differs from the one that wrote the points."""
    extractor = recorded_extractor(recorded)
    if not hasattr(extractor, "embed_query"):
        raise SearchError(f"extractor {recorded['name']!r} ({recorded['kind']}) cannot embed a text query")
    warnings = []
    if extractor.version != recorded["version"]:
        warnings.append(f"the collection was written with {recorded['version']}, this machine has "
                        f"{extractor.version}; scores may be off")
    return extractor, warnings


def hit(score: float, payload: dict[str, Any], query: str = "") -> Hit:
    key = payload.get(PP.KEY, "")
    text = payload.get("text") or ""
    segment = best_segment(payload, query)
    timestamp = payload.get("timestamp")
    at = segment[0] if segment else float(timestamp) if isinstance(timestamp, int | float) else None
    uri = payload.get(PP.URI, "")
    page = payload.get("page")
    modality = payload.get(PP.MODALITY)
    return Hit(score=score, uri=uri, key=key, item=item_of(key, uri), text=text,
               at=at, excerpt=segment[1] if segment else text,
               failed_extractors=tuple(f.extractor for f in PP.failures_of(payload)),
               page=page if isinstance(page, int) else None,
               modality=modality if isinstance(modality, str) else None,
               timestamp=float(timestamp) if isinstance(timestamp, int | float) else None)


def item_of(key: str, uri: str | None = None) -> str:
    """The position part of an item key `<uri>#<position>` (`chunk=1`, `frame=48`), "-" for a whole
    file. With the uri given, a `#` in the file's name is part of the uri, not the position."""
    if uri is not None and key.startswith(uri):
        position = key[len(uri) + 1:] if key[len(uri):len(uri) + 1] == "#" else ""
        return position or "-"
    return key.rsplit("#", 1)[1] if "#" in key else "-"


def spoken_at(payload: dict[str, Any], query: str) -> float | None:
    """Where in the file the hit is: the start of its best transcript segment (best_segment), else
    the item's `timestamp`; None for items without a time."""
    return hit(0.0, payload, query).at


def best_segment(payload: dict[str, Any], query: str) -> tuple[float, str] | None:
    """For an item with a transcript (any payload value holding `segments` of {start, text}), the
    (start, text) of the segment sharing most words with the query, the earliest on a tie."""
    words = _words(query)
    best: tuple[int, float, str] | None = None
    for value in payload.values():
        segments = value.get("segments") if isinstance(value, dict) else None
        for segment in segments if isinstance(segments, list) else []:
            if not isinstance(segment, dict) or not isinstance(segment.get("start"), int | float):
                continue
            said = str(segment.get("text") or "")
            shared, start = len(words & _words(said)), float(segment["start"])
            if best is None or (-shared, start) < (-best[0], best[1]):
                best = (shared, start, said)
    return (best[1], best[2]) if best else None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) > 2}
