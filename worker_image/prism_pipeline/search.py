"""Search a collection a Prism run wrote, with a text query embedded the way its points were.

The collection's companion records which extractors wrote it (kind, model, version, options); the
query goes through the same extractor, built here at that kind, model and options, so query and
points share one embedding space. `prism search` is this plus argument parsing and a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prism_pipeline.sink import Sink, SinkWriteError, StoreBusyError, StoreMissingError

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


@dataclass
class SearchResult:
    hits: list[Hit]
    vector: str                                          # the extractor whose vectors were searched
    warnings: list[str] = field(default_factory=list)    # e.g. the query model's version differs


def search(query: str, collection: str, *, vector: str | None = None, limit: int = 5,
           state_dir: str | Path = ".prism", url: str | None = None) -> SearchResult:
    """The best `limit` items of `collection` for `query`, from the embedded store under `state_dir`
    or the Qdrant server at `url`. Raises SearchError."""
    try:
        sink = Sink.open_existing(collection, url=url, state_dir=state_dir)
    except StoreMissingError as err:
        raise SearchError(f"no embedded store under {state_dir}/qdrant; run `prism run job.yaml` first "
                          "(or pass --state-dir)") from err
    except StoreBusyError as err:
        raise SearchError(str(err)) from err
    with sink:
        try:
            chosen = choose_vector(sink, collection, vector)
            extractor, warnings = query_extractor(chosen)
            extractor.setup()
            found = sink.search(chosen["name"], [float(x) for x in extractor.embed_query(query)], limit)
        except SinkWriteError as err:
            raise SearchError(str(err)) from err
    return SearchResult([hit(f.score, f.payload) for f in found], chosen["name"], warnings)


def choose_vector(sink: Sink, collection: str, vector: str | None) -> dict[str, Any]:
    """The recorded extractor whose vectors to search: the one named, else the first of QUERY_KINDS."""
    meta = sink.meta()
    if meta is None:
        names = ", ".join(sink.collections())
        raise SearchError(f"no Prism collection {collection!r} (collections here: {names or 'none'})")
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


def query_extractor(recorded: dict[str, Any]) -> tuple[Any, list[str]]:
    """The extractor as recorded (kind, model, options), not set up yet, and a warning when this
    machine's version of it differs from the one that wrote the points."""
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import ExtractorError, build

    spec = ExtractorSpec.model_validate({"name": recorded["name"], "kind": recorded["kind"],
                                         "model": recorded.get("model"), "options": recorded.get("options") or {}})
    try:
        extractor = build(spec, f"the collection's extractor {recorded['name']!r}")
    except ExtractorError as err:  # e.g. its model is not on this machine
        raise SearchError(str(err)) from err
    if not hasattr(extractor, "embed_query"):
        raise SearchError(f"extractor {recorded['name']!r} ({recorded['kind']}) cannot embed a text query")
    warnings = []
    if extractor.version != recorded["version"]:
        warnings.append(f"the collection was written with {recorded['version']}, this machine has "
                        f"{extractor.version}; scores may be off")
    return extractor, warnings


def hit(score: float, payload: dict[str, Any]) -> Hit:
    key = payload.get("key", "")
    return Hit(score=score, uri=payload.get("uri", ""), key=key,
               item=key.split("#", 1)[1] if "#" in key else "-", text=payload.get("text") or "")
