"""`prism search "text" --collection NAME`: nearest items in a collection written by `prism run`."""

from __future__ import annotations

import argparse
import sys

HELP = ("Search a collection with a text query, embedded by the same extractor (model and options) "
        "that wrote it; prints score, uri and item key. Uses the embedded store under --state-dir.")

QUERY_KINDS = ("text-embedding", "image-embedding")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="the text to search for")
    parser.add_argument("--collection", required=True, help="collection name (spec.sink.qdrant.collection)")
    parser.add_argument("--vector", default=None,
                        help="which extractor's vector to search (default: the first text-embedding one)")
    parser.add_argument("--limit", type=int, default=5, help="number of results (default 5)")
    parser.add_argument("--state-dir", default=".prism", help="where `prism run` kept the store (default .prism)")
    parser.add_argument("--url", default=None,
                        help="search a Qdrant server instead (API key from QDRANT_API_KEY)")


def run(args: argparse.Namespace) -> int:
    try:
        hits = search(args.query, args.collection, vector=args.vector, limit=args.limit,
                      state_dir=args.state_dir, url=args.url)
    except SearchError as err:
        print(f"prism search: {err}", file=sys.stderr)
        return 1
    if not hits:
        print("no results")
        return 0
    print(f"{'SCORE':>6}  {'URI':<48}  {'ITEM':<18}  TEXT")
    for h in hits:
        print(f"{h['score']:>6.3f}  {h['uri']:<48}  {h['item']:<18}  {h['text']}")
    return 0


class SearchError(Exception):
    pass


def search(query: str, collection: str, *, vector: str | None = None, limit: int = 5,
           state_dir: str = ".prism", url: str | None = None) -> list[dict]:
    """The best `limit` points for `query`: [{score, uri, key, item, text}]."""
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import build
    from prism_pipeline.sink import StoreBusyError, read_meta

    if url:
        from prism_pipeline.sink.server import server_client

        client = server_client(url, 30)
    else:
        from pathlib import Path

        from prism_pipeline.sink.embedded import embedded_client

        if not (Path(state_dir) / "qdrant").is_dir():
            raise SearchError(f"no embedded store under {state_dir}/qdrant; run `prism run job.yaml` first "
                              "(or pass --state-dir)")
        try:
            client = embedded_client(state_dir)
        except StoreBusyError as err:
            raise SearchError(str(err)) from err
    meta = read_meta(client, collection) if client.collection_exists(collection) else None
    if meta is None:
        names = ", ".join(c.name for c in client.get_collections().collections if "__prism" not in c.name)
        raise SearchError(f"no Prism collection {collection!r} (collections here: {names or 'none'})")
    vectors = [e for e in meta["extractors"] if e["output"] == "vector"]
    if vector:
        chosen = next((e for e in vectors if e["name"] == vector), None)
        if chosen is None:
            raise SearchError(f"--vector {vector!r}: collection {collection!r} has vectors "
                              f"{', '.join(e['name'] for e in vectors) or 'none'}")
    else:
        chosen = next((e for k in QUERY_KINDS for e in vectors if e["kind"] == k), None)
        if chosen is None:
            raise SearchError(f"collection {collection!r} has no text-searchable vector "
                              f"(extractors: {', '.join(e['name'] for e in meta['extractors'])}); use --vector")
    spec = ExtractorSpec.model_validate({"name": chosen["name"], "kind": chosen["kind"],
                                         "model": chosen.get("model"), "options": chosen.get("options") or {}})
    extractor = build(spec)
    if not hasattr(extractor, "embed_query"):
        raise SearchError(f"extractor {chosen['name']!r} ({chosen['kind']}) cannot embed a text query")
    if extractor.version != chosen["version"]:
        print(f"prism search: warning: the collection was written with {chosen['version']}, this machine has "
              f"{extractor.version}; scores may be off", file=sys.stderr)
    extractor.setup()
    query_vector = [float(x) for x in extractor.embed_query(query)]
    found = client.query_points(collection, query=query_vector, using=chosen["name"], limit=limit,
                                with_payload=True).points
    if not url:
        from prism_pipeline.sink.embedded import close_embedded

        close_embedded(state_dir)
    hits = []
    for p in found:
        payload = p.payload or {}
        key = payload.get("key", "")
        item = key.split("#", 1)[1] if "#" in key else "-"
        text = (payload.get("text") or "").replace("\n", " ")
        hits.append({"score": p.score, "uri": payload.get("uri", ""), "key": key, "item": item,
                     "text": text[:60] + ("..." if len(text) > 60 else "")})
    return hits
