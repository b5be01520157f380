"""`prism collections list|show|delete|files`: what a store (or a Qdrant server) holds, one collection's
extractor record, deleting a collection, and one file's results.

Argument parsing and tables; the reads go through prism_pipeline.sink.Sink."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cmd_search import display_uri

HELP = ("List the collections of the embedded store under --state-dir (or a Qdrant server, --url), show "
        "which extractors wrote one, delete one (--yes), or show one file's results.")

USAGE, FAILED = 2, 1  # exit codes: something named wrong / asked wrong; a store or server that failed us
PAYLOAD_CHARS = 100   # of a point's payload, in the `files` table
HIDDEN = ("uri", "key", "content_hash", "models", "modality", "file_modality", "failed_extractors")


class _Stop(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--state-dir", default=".prism", help="where `prism run` kept the store (default .prism)")
        p.add_argument("--url", default=None, help="a Qdrant server instead (API key from QDRANT_API_KEY)")
        return p

    action("list", "every collection: name, points, files recorded, extractors")
    p = action("show", "the extractors that wrote a collection: name, kind, model, version, output")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="the extractor record as JSON")
    p = action("delete", "delete a collection and its companion NAME__prism_files (needs --yes)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true", help="really delete it")
    p = action("files", "one file's results: its record and its points' payloads (no vectors)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="PATH|URI",
                   help="the file as the job listed it: a local path (relative to here) or file://, s3://, gs:// uri")
    p.add_argument("--json", action="store_true", help="the record and payloads as JSON")


def run(args: argparse.Namespace) -> int:
    import warnings

    from prism_pipeline.sink import SinkWriteError, StoreBusyError

    # qdrant-client warns when it cannot reach a server at connect; the request that fails says so
    warnings.filterwarnings("ignore", message="Failed to obtain server version")
    try:
        with _open(args) as sink:
            return {"list": _list, "show": _show, "delete": _delete, "files": _files}[args.action](sink, args)
    except _Stop as stop:
        print(f"prism collections: {stop}", file=sys.stderr)
        return stop.code
    except StoreBusyError as err:
        print(f"prism collections: {err}", file=sys.stderr)
        return FAILED
    except SinkWriteError as err:  # the server unreachable, a request refused after retries
        where = args.url or f"the embedded store under {args.state_dir}"
        print(f"prism collections: {where}: {err}", file=sys.stderr)
        return FAILED


def _open(args: argparse.Namespace) -> Any:
    from prism_pipeline.sink import Sink, StoreMissingError

    try:
        return Sink.open_existing(getattr(args, "name", ""), url=args.url, state_dir=args.state_dir)
    except StoreMissingError as err:
        raise _Stop(f"no embedded store under {args.state_dir}; run `prism run job.yaml` first "
                    "(or pass --state-dir, or --url for a server)", USAGE) from err


def _prism_collection(sink: Any) -> dict[str, Any]:
    """The collection's extractor record; _Stop when there is no such collection or Prism did not write it."""
    meta = sink.meta()
    if meta is not None:
        return meta
    if sink.exists():
        raise _Stop(f"{sink.collection!r} is not a Prism collection (it has no extractor record in "
                    f"{sink.collection}__prism_files); Prism leaves it alone", USAGE)
    names = ", ".join(sink.collections())
    raise _Stop(f"no collection {sink.collection!r} (collections here: {names or 'none'})", USAGE)


def _list(sink: Any, args: argparse.Namespace) -> int:
    from prism_pipeline.sink import Sink

    rows = []
    for name in sink.collections():
        one = Sink.open_existing(name, url=args.url, state_dir=args.state_dir)  # the same store client
        meta = one.meta()
        extractors = ", ".join(e["name"] for e in meta["extractors"]) if meta else "- (not a Prism collection)"
        rows.append((name, str(one.count()), str(one.files_recorded()) if meta else "-", extractors))
        if args.url:
            one.close()
    if not rows:
        print("no collections")
        return 0
    _table(("NAME", "POINTS", "FILES", "EXTRACTORS"), rows)
    return 0


def _show(sink: Any, args: argparse.Namespace) -> int:
    extractors = _prism_collection(sink)["extractors"]
    if args.json:
        print(json.dumps(extractors, indent=2))
        return 0
    _table(("NAME", "KIND", "MODEL", "VERSION", "OUTPUT"),
           [(e["name"], e["kind"], e.get("model") or "-", e.get("version") or "-",
             f"{e['output']}({e['size']})" if e.get("size") else e["output"]) for e in extractors])
    return 0


def _delete(sink: Any, args: argparse.Namespace) -> int:
    _prism_collection(sink)
    points, files = sink.count(), sink.files_recorded()
    what = f"collection {sink.collection!r} ({points} points, {files} files recorded) and {sink.collection}__prism_files"
    if not args.yes:
        raise _Stop(f"would delete {what}; nothing was deleted: pass --yes to delete it", USAGE)
    sink.delete_collection()
    print(f"deleted {what}")
    return 0


def _files(sink: Any, args: argparse.Namespace) -> int:
    _prism_collection(sink)
    uri = resolve(args.file)
    record, payloads = sink.file_points(uri)
    if record is None and not payloads:
        raise _Stop(f"{args.file}: no file {uri} in collection {sink.collection!r} ({sink.files_recorded()} files "
                    "recorded); give the path or uri the job listed (local paths are made absolute)", USAGE)
    payloads.sort(key=_position)
    if args.json:
        print(json.dumps({"uri": uri, "record": record, "points": payloads}, indent=2, default=str))
        return 0
    if record is None:
        print(f"{display_uri(uri)}: no file record (never finished), {len(payloads)} points")
    else:
        failed = f", failed at {record['failed_stage']}" if record.get("failed_stage") else ""
        print(f"{display_uri(uri)}: {record.get('items')} items, content {str(record.get('content_hash'))[:12]}, "
              f"{len(payloads)} points{failed}")
    if payloads:
        _table(("ITEM", "MODALITY", "FAILED", "PAYLOAD"),
               [(_item(p), str(p.get("modality") or "-"), ",".join(p.get("failed_extractors") or []) or "-",
                 _short(p)) for p in payloads])
    return 0


def resolve(given: str) -> str:
    """The uri a listing gives the file: local paths and file:// absolute (as `prism run` resolves a
    source), s3:// and gs:// as `bucket/key` under their scheme."""
    from prism_pipeline.sources import SourceError, split_uri

    try:
        scheme, path = split_uri(given)
    except SourceError as err:
        raise _Stop(f"{given}: {err}", USAGE) from err
    return path if scheme is None else f"{scheme}://{path}"


def _item(payload: dict[str, Any]) -> str:
    key = str(payload.get("key") or "")
    return key.split("#", 1)[1] if "#" in key else "-"


def _position(payload: dict[str, Any]) -> tuple:
    from prism_api.point_payload import POSITION_FIELDS

    return (*(float(v) if isinstance(v := payload.get(f), int | float) else -1.0 for f in POSITION_FIELDS),
            str(payload.get("key") or ""))


def _short(payload: dict[str, Any]) -> str:
    shown = {k: v for k, v in payload.items() if k not in HIDDEN and v not in (None, [], {}, "")}
    text = json.dumps(shown, ensure_ascii=False, default=str)
    return text[:PAYLOAD_CHARS] + ("..." if len(text) > PAYLOAD_CHARS else "")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join([*(f"{str(c):<{w}}" for c, w in zip(row, widths, strict=False)), str(row[-1])]).rstrip())
