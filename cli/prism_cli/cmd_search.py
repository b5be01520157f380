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
        "spoken) and the item's text. Uses the embedded store under --state-dir.")

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


def run(args: argparse.Namespace) -> int:
    from prism_pipeline.search import SearchError, search_many

    queries = [args.query] if isinstance(args.query, str) else list(args.query)
    try:
        results = search_many(queries, args.collection, vector=args.vector, limit=args.limit,
                              state_dir=args.state_dir, url=args.url)
    except SearchError as err:
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
