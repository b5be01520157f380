"""`prism serve --collection NAME`: the SearchService application on this machine (local Ray, the
embedded store or a Qdrant server); the serving itself is prism_pipeline.serve.local."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .argtypes import PORT, whole_number

HELP = ("Serve a collection over HTTP on this machine: POST /search and POST /embed with the model versions "
        "that wrote it, on local Ray (or RAY_ADDRESS). Holds the embedded store while it serves; `prism search` "
        "uses the running service. Stop with Ctrl-C.")

EXAMPLE_QUERY = "how do bees make honey"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", required=True, help="collection name (spec.sink.qdrant.collection)")
    parser.add_argument("--state-dir", default=".prism",
                        help="where `prism run` kept the store, and where the running service is recorded "
                        "for `prism search` (default .prism)")
    parser.add_argument("--url", default=None, help="serve from a Qdrant server instead (API key from QDRANT_API_KEY)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=PORT, default=8000, help="HTTP port, 1-65535 (default 8000)")
    parser.add_argument("--replicas", type=whole_number(1, 64), default=None, metavar="N",
                        help="replicas of each model's deployment, 1-64 (default 1)")
    parser.add_argument("--start-timeout", type=whole_number(1, 3600), default=600, metavar="SECONDS",
                        help="how long loading the models may take before giving up (default 600)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's and Serve's own logs")


def app_args(args: argparse.Namespace):
    """The Serve application's arguments (prism_api.search_service.ServeAppArgs) for the flags."""
    from prism_api.search_service import ServeAppArgs

    wire: dict = {"collection": args.collection}
    if args.url:
        wire["qdrantUrl"] = args.url
    else:
        wire["stateDir"] = str(Path(args.state_dir).resolve())  # the replicas may not share this cwd
    return ServeAppArgs.model_validate(wire)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        serve_args = app_args(args)
    except ValidationError as err:
        for e in err.errors():
            flag = {"collection": "--collection", "qdrantUrl": "--url", "stateDir": "--state-dir"}.get(
                str(e["loc"][0]) if e["loc"] else "", "")
            print(f"prism serve: {flag + ': ' if flag else ''}{e['msg']}", file=sys.stderr)
        return 2
    if not args.url and not any((Path(args.state_dir) / d).is_dir() for d in ("qdrant-edge", "qdrant")):
        print(f"prism serve: no embedded store under {args.state_dir}; run `prism run job.yaml` first "
              "(or pass --state-dir, or --url for a Qdrant server)", file=sys.stderr)
        return 1
    import logging

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from prism_pipeline.serve.local import serve_locally
    except KeyboardInterrupt:
        print("prism serve: interrupted before the service started", file=sys.stderr)
        return 130
    print(f"prism serve: starting collection {args.collection!r} on http://{args.host}:{args.port} "
          "(loading its models)...", file=sys.stderr, flush=True)
    return serve_locally(serve_args, host=args.host, port=args.port, state_dir=args.state_dir,
                         replicas=args.replicas, verbose=args.verbose, start_timeout_s=float(args.start_timeout),
                         on_ready=lambda running: print(ready_text(running, args), flush=True))


def ready_text(running, args: argparse.Namespace) -> str:
    """What `prism serve` prints once the service answers: the endpoint, the model versions served,
    and how to query it."""
    from prism_api.search_service import ROUTE_EMBED, ROUTE_INFO, ROUTE_OPENAPI, ROUTE_SEARCH

    record, info = running.record, running.info
    url = record.url
    lines = [f"Serving collection {info.collection!r} at {url} (Ray at {record.ray_address or 'local'}); "
             "Ctrl-C stops it.", "", "  Models (the versions that wrote the collection):"]
    width = max((len(m.extractor) for m in info.models), default=0)
    for m in info.models:
        lines.append(f"    {m.extractor:<{width}}  {m.kind:<16}  {m.version}")
    search_body = json.dumps({"text": EXAMPLE_QUERY, "limit": 3})
    filtered = json.dumps({"text": EXAMPLE_QUERY, "limit": 3, "filter": {"modality": ["text"]}})
    state = "" if args.state_dir == ".prism" else f" --state-dir {shlex.quote(str(args.state_dir))}"
    lines += ["", "  Try:",
              f"    curl -s {url}{ROUTE_INFO}",
              f"    curl -s {url}{ROUTE_SEARCH} -H 'Content-Type: application/json' -d {shlex.quote(search_body)}",
              f"    curl -s {url}{ROUTE_SEARCH} -H 'Content-Type: application/json' -d {shlex.quote(filtered)}",
              f"    curl -s {url}{ROUTE_EMBED} -H 'Content-Type: application/json' -d "
              f"{shlex.quote(json.dumps({'text': EXAMPLE_QUERY}))}",
              f"    prism search {shlex.quote(EXAMPLE_QUERY)} --collection {args.collection}{state}",
              "", "  A batch job on the same Ray (into another state dir: this one is held):",
              f"    {' '.join(f'{k}={shlex.quote(v)}' for k, v in running.beside_env.items())} prism run job.yaml "
              "--state-dir .prism-batch",
              "",
              f"  API: {url}{ROUTE_OPENAPI} (and {url}/docs)"]
    return "\n".join(lines)
