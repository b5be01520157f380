"""`prism search "text" --collection NAME`: nearest items in a collection written by `prism run`.

Argument parsing and the table; the search itself is prism_pipeline.search."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from .argtypes import non_empty, whole_number

HELP = ("Search a collection with a text query, embedded by the same extractor (model and options) "
        "that wrote it; prints score, uri, item key, the time in the file (where a transcript's words were "
        "spoken) and the item's text. Uses the `prism serve` running for the collection when the state dir "
        "records one, else the embedded store under --state-dir.")

MODALITIES = ("image", "audio", "text", "video", "document")

TEXT_CHARS = 60  # of an item's text, in the table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="+", type=non_empty,
                        help="the text to search for; several queries share one model load")
    parser.add_argument("--collection", required=True, help="collection name (spec.sink.qdrant.collection)")
    parser.add_argument("--vector", default=None,
                        help="which extractor's vector to search (default: the first text-embedding one)")
    parser.add_argument("--limit", type=whole_number(1), default=5, help="number of results, at least 1 (default 5)")
    parser.add_argument("--state-dir", default=".prism", help="where `prism run` kept the store (default .prism)")
    parser.add_argument("--url", default=None,
                        help="search a Qdrant server instead (API key from QDRANT_API_KEY)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per hit (query, score, full uri, key, item, at, page, text, "
                             "failed_extractors, vector) instead of the table")
    filters = parser.add_argument_group("filters (a hit meets all of them)")
    filters.add_argument("--modality", action="append", choices=MODALITIES, default=None,
                         help="only items of this modality (repeat for any of several)")
    filters.add_argument("--uri-prefix", type=non_empty_text("--uri-prefix"), default=None, metavar="PREFIX",
                         help="only items of files whose uri starts with this (as `prism search --json` prints "
                         "uris, e.g. file:///data/media/video/)")
    filters.add_argument("--after", type=seconds, default=None, metavar="SECONDS",
                         help="only items at or after this second of their file (frames, audio chunks)")
    filters.add_argument("--before", type=seconds, default=None, metavar="SECONDS",
                         help="only items at or before this second of their file")
    filters.add_argument("--page", type=whole_number(1), default=None, metavar="N",
                         help="only document items on this page (PDF pages count from 1)")
    parser.add_argument("--no-service", action="store_true",
                        help="open the store in this process even when a `prism serve` for the collection runs")


def run(args: argparse.Namespace) -> int:
    queries = [args.query] if isinstance(args.query, str) else list(args.query)
    try:
        where = search_filter(args)
    except ValueError as err:
        print(f"prism search: {err}", file=sys.stderr)
        return 2
    try:
        results = _through_service(args, queries, where)
        if results is None:
            results = _in_process(args, queries, where)
    except SearchFailed as err:
        print(f"prism search: {err}", file=sys.stderr)
        return 1
    for warning in results[0].warnings if results else []:
        print(f"prism search: warning: {warning}", file=sys.stderr)
    for query, result in zip(queries, results, strict=True):
        if getattr(args, "json", False):  # callers building a Namespace by hand may leave it out
            for h in result.hits:
                print(json.dumps(hit_json(query, h, result.vector), ensure_ascii=False))
            continue
        if len(queries) > 1:
            print(f"{'' if query == queries[0] else chr(10)}> {cell(query)}")
        _table(result)
    partial = sorted({h.key for r in results for h in r.hits if h.failed_extractors})
    if partial:
        one = len(partial) == 1
        print(f"prism search: note: {len(partial)} {'result lacks' if one else 'results lack'} an extractor's "
              f"output (`prism failed --collection {args.collection}` lists them)", file=sys.stderr)
    return 0


class SearchFailed(Exception):
    """The search could not be made (in this process or through the service); the message says why."""


def search_filter(args: argparse.Namespace):
    """The filter flags as the HTTP API's SearchFilter (None without any); ValueError naming the
    flags when they contradict each other (--after later than --before)."""
    from pydantic import ValidationError

    from prism_api.search_service import SearchFilter, TimeRange

    modality = getattr(args, "modality", None)
    after, before = getattr(args, "after", None), getattr(args, "before", None)
    fields = {"modality": sorted(set(modality), key=MODALITIES.index) if modality else None,
              "uri_prefix": getattr(args, "uri_prefix", None), "page": getattr(args, "page", None)}
    try:
        if after is not None or before is not None:
            fields["time_range"] = TimeRange(gte=after, lte=before)
        found = SearchFilter(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        if after is not None and before is not None and after > before:
            raise ValueError(f"--after {after:g} is later than --before {before:g}: give a time range whose "
                             "start is at or before its end") from err
        raise ValueError("; ".join(e["msg"] for e in err.errors())) from err
    return found if found.model_fields_set else None


def _through_service(args: argparse.Namespace, queries: list[str], where):
    """The results from the `prism serve` recorded for the collection, None when none runs (or
    --no-service)."""
    if getattr(args, "no_service", False):
        return None
    from prism_api.search_service import SearchRequest

    from . import service_client

    record = service_client.find_service(args.state_dir, args.collection, args.url)
    if record is None:
        return None
    results = []
    for query in queries:
        try:
            request = SearchRequest(text=query, vector=args.vector, limit=args.limit, filter=where)
        except ValueError as err:  # the HTTP API's bounds (limit, query length), narrower than this process's
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise SearchFailed(f"the running service at {record.url} cannot take this search ({problems}); "
                               "pass --no-service once it has stopped") from err
        try:
            results.append(service_client.search(record, request))
        except service_client.ServiceError as err:
            raise SearchFailed(str(err)) from err
    return results


def _in_process(args: argparse.Namespace, queries: list[str], where):
    from prism_pipeline.search import SearchError, search_many

    options = {"filter": where} if where is not None else {}
    try:
        return search_many(queries, args.collection, vector=args.vector, limit=args.limit,
                           state_dir=args.state_dir, url=args.url, **options)
    except SearchError as err:
        raise SearchFailed(str(err)) from err


def seconds(text: str) -> float:
    """A time into a file: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more (got {text!r})")
    return value


def non_empty_text(flag: str):
    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"empty {flag}: give the start of the uris to keep")
        return text

    parse.__name__ = "text"
    return parse


def _table(result) -> None:
    if not result.hits:
        print("no results")
        return
    print(f"{'SCORE':>6}  {'URI':<44}  {'ITEM':<16}  {'AT':>6}  TEXT")
    for h in result.hits:
        at = f"{h.at:.1f}s" if h.at is not None else "-"
        print(f"{h.score:>6.3f}  {cell(display_uri(h.uri)):<44}  {cell(h.item):<16}  {at:>6}  {_short(h.excerpt)}")


def hit_json(query: str, h, vector: str) -> dict:
    """One hit for `--json`: the full uri (never shortened), the item's whole text."""
    return {"query": query, "score": h.score, "uri": h.uri, "key": h.key, "item": h.item, "at": h.at,
            "page": h.page, "text": h.text, "failed_extractors": list(h.failed_extractors), "vector": vector}


def display_uri(uri: str) -> str:
    """Local files (a path or file://) under the current directory as relative paths, as the job
    named them; anything else as stored."""
    path = uri[len("file://"):] if uri.startswith("file:///") else uri
    if path.startswith("/"):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            return relative
    return uri


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def cell(text: str) -> str:
    """A table cell on one line: control characters escaped (\\n, \\t, \\xNN), so a file name
    with a newline or tab keeps its row and a terminal escape sequence is shown, not run."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def _short(text: str) -> str:
    text = cell(" ".join(text.split()))  # the item's text flattened to one line
    return text[:TEXT_CHARS] + ("..." if len(text) > TEXT_CHARS else "")
