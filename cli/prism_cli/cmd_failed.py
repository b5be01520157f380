"""`prism failed --collection NAME`: the items of a collection that an extractor failed on (partial
results), to find and reprocess them.

Argument parsing and the table; the query is prism_pipeline.failed_items."""

from __future__ import annotations

import argparse
import sys

from .argtypes import whole_number
from .cmd_search import cell, display_uri

HELP = ("List the items of a collection that an extractor failed on: they were written without that "
        "extractor's output. Prints uri, item, extractor and reason; run the job again to reprocess "
        "their files (incremental runs redo them). Uses the embedded store under --state-dir.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", required=True, help="collection name (spec.sink.qdrant.collection)")
    parser.add_argument("--extractor", default=None,
                        help="only the items this extractor failed on (default: any extractor)")
    parser.add_argument("--limit", type=whole_number(1), default=100, help="number of items listed, at least 1 (default 100)")
    parser.add_argument("--state-dir", default=".prism", help="where `prism run` kept the store (default .prism)")
    parser.add_argument("--url", default=None,
                        help="read a Qdrant server instead (API key from QDRANT_API_KEY)")


def run(args: argparse.Namespace) -> int:
    from prism_pipeline.failed_items import failed_items
    from prism_pipeline.search import SearchError

    try:
        found = failed_items(args.collection, extractor=args.extractor, limit=args.limit,
                             state_dir=args.state_dir, url=args.url)
    except SearchError as err:
        print(f"prism failed: {err}", file=sys.stderr)
        return 1
    which = f"extractor {args.extractor!r}" if args.extractor else "an extractor"
    if not found.total:
        print(f"no items that {which} failed on")
        return 0
    print(f"{'URI':<44}  {'ITEM':<16}  {'EXTRACTOR':<16}  REASON")
    for item in found.items:
        for failure in item.failures:
            if args.extractor is None or failure.extractor == args.extractor:
                print(f"{cell(display_uri(item.uri)):<44}  {cell(item.item):<16}  {failure.extractor:<16}  "
                      f"{cell(failure.reason)}")
    files = len({item.uri for item in found.items})
    where = (f"in {files} file{'s' * (files != 1)}" if len(found.items) == found.total
             else f"{len(found.items)} listed (see --limit)")
    print(f"{found.total} item{'s' * (found.total != 1)} that {which} failed on, {where}; "
          "run the job again to reprocess them")
    return 0
