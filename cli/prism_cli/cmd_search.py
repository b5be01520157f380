"""`prism search "text" --collection NAME`: nearest items in a collection written by `prism run`.

Argument parsing and the table; the search itself is prism_pipeline.search."""

from __future__ import annotations

import argparse
import os
import sys

HELP = ("Search a collection with a text query, embedded by the same extractor (model and options) "
        "that wrote it; prints score, uri, item key, the time in the file (where a transcript's words were "
        "spoken) and the item's text. Uses the embedded store under --state-dir.")

TEXT_CHARS = 60  # of an item's text, in the table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="+",
                        help="the text to search for; several queries share one model load")
    parser.add_argument("--collection", required=True, help="collection name (spec.sink.qdrant.collection)")
    parser.add_argument("--vector", default=None,
                        help="which extractor's vector to search (default: the first text-embedding one)")
    parser.add_argument("--limit", type=int, default=5, help="number of results (default 5)")
    parser.add_argument("--state-dir", default=".prism", help="where `prism run` kept the store (default .prism)")
    parser.add_argument("--url", default=None,
                        help="search a Qdrant server instead (API key from QDRANT_API_KEY)")


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
        if len(queries) > 1:
            print(f"{'' if query == queries[0] else chr(10)}> {query}")
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
        print(f"{h.score:>6.3f}  {display_uri(h.uri):<44}  {h.item:<16}  {at:>6}  {_short(h.excerpt)}")


def display_uri(uri: str) -> str:
    """Local files under the current directory as relative paths (as the job named them)."""
    if uri.startswith("/"):
        relative = os.path.relpath(uri)
        if not relative.startswith(".."):
            return relative
    return uri


def _short(text: str) -> str:
    text = text.replace("\n", " ")
    return text[:TEXT_CHARS] + ("..." if len(text) > TEXT_CHARS else "")
