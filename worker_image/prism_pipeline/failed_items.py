"""The items of a collection that an extractor failed on: what `prism failed` lists, to find partial
results and reprocess them.

Such an item was written without that extractor's output, and its point says which extractors
failed and why (prism_api.point_payload); the query is that module's filter. Running the job again
reprocesses their files: incremental runs never skip a file that did not finish cleanly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prism_api import point_payload as PP
from prism_api.point_payload import ExtractorFailure
from prism_pipeline.search import SearchError, collection_meta, item_of, open_collection
from prism_pipeline.sink import SinkWriteError


@dataclass(frozen=True)
class FailedItem:
    uri: str
    key: str     # the item's key: <uri>#<position>
    item: str    # the position part of the key, "-" for a whole file
    failures: tuple[ExtractorFailure, ...]


@dataclass(frozen=True)
class FailedItems:
    items: list[FailedItem]  # at most the limit asked for, by uri and key
    total: int               # how many items in the collection match


def failed_items(collection: str, *, extractor: str | None = None, limit: int = 100,
                 state_dir: str | Path = ".prism", url: str | None = None) -> FailedItems:
    """The items of `collection` that `extractor` (or any extractor) failed on, from the embedded
    store under `state_dir` or the Qdrant server at `url`. Raises SearchError."""
    with open_collection(collection, state_dir=state_dir, url=url) as sink:
        try:
            names = [e["name"] for e in collection_meta(sink, collection)["extractors"]]
            if extractor is not None and extractor not in names:
                raise SearchError(f"--extractor {extractor!r}: collection {collection!r} has extractors "
                                  f"{', '.join(names) or 'none'}")
            payloads, total = sink.failed_points(extractor, limit)
        except SinkWriteError as err:
            raise SearchError(str(err)) from err
    items = [FailedItem(uri=p.get(PP.URI, ""), key=p.get(PP.KEY, ""), item=item_of(p.get(PP.KEY, ""), p.get(PP.URI, "")),
                        failures=tuple(PP.failures_of(p)))
             for p in payloads]
    return FailedItems(sorted(items, key=lambda i: (i.uri, i.key)), total)
