"""A stand-in Qdrant server for server-mode tests: Qdrant's REST routes that Prism uses, served over
real HTTP and backed by qdrant-client's own local engine.

No Qdrant server binary can run on these machines (docs/design.md §6), so this plays its part the way
kmock plays Kubernetes': the pipeline's writer actors talk to it through the real QdrantClient over
HTTP from other processes. `fail_upserts` answers that many point upserts with 503 first, to
exercise the writers' retries. Its limits: only the routes below, no auth; payload indexes are
recorded (`indexes`, and a collection's `payload_schema`) but not built.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.http import models as m


class QdrantStandIn:
    def __init__(self, fail_upserts: int = 0):
        self.local = QdrantClient(":memory:")
        self.lock = threading.Lock()
        self.fail_upserts = fail_upserts
        self.upserts = 0
        self.indexes: dict[str, dict[str, str]] = {}  # collection -> field -> schema, as asked
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.local.close()

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        local = self.local
        if method == "GET" and path == "/":
            return 200, {"title": "qdrant - vector search engine (Prism test stand-in)", "version": "1.20.0"}
        if method == "GET" and path == "/collections":
            return 200, local.get_collections().model_dump(mode="json")
        found = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not found:
            return 404, {"error": f"no route {method} {path}"}
        name, rest = found.group(1), found.group(2) or ""
        match method, rest:
            case "GET", "/exists":
                return 200, {"exists": local.collection_exists(name)}
            case "GET", "":
                info = local.get_collection(name).model_dump(mode="json", exclude_none=True)
                info["payload_schema"] = {f: {"data_type": t, "points": 0} for f, t in self.indexes.get(name, {}).items()}
                return 200, info
            case "DELETE", "":
                return 200, local.delete_collection(name)
            case "PUT", "":
                req = m.CreateCollection.model_validate(body)
                return 200, local.create_collection(name, vectors_config=req.vectors)
            case "PUT", "/index":
                req = m.CreateFieldIndex.model_validate(body)
                self.indexes.setdefault(name, {})[req.field_name] = str(getattr(req.field_schema, "value",
                                                                               req.field_schema))
                return 200, {"operation_id": 0, "status": "completed"}
            case "PUT", "/points":
                if not name.endswith("__prism_files"):  # refusals reach the writer actors
                    self.upserts += 1
                if not name.endswith("__prism_files") and self.upserts <= self.fail_upserts:
                    return 503, {"error": "service unavailable (injected)"}
                points = [m.PointStruct.model_validate(p) for p in body["points"]]
                return 200, local.upsert(name, points=points).model_dump(mode="json")
            case "POST", "/points":
                req = m.PointRequest.model_validate(body)
                records = local.retrieve(name, ids=req.ids, with_payload=req.with_payload or False,
                                         with_vectors=req.with_vector or False)
                return 200, [r.model_dump(mode="json") for r in records]
            case "POST", "/points/delete":
                selector = m.FilterSelector.model_validate(body) if "filter" in body else \
                    m.PointIdsList.model_validate(body)
                return 200, local.delete(name, points_selector=selector).model_dump(mode="json")
            case "POST", "/points/query":
                req = m.QueryRequest.model_validate(body)
                return 200, local.query_points(name, query=req.query, using=req.using, limit=req.limit or 10,
                                               query_filter=req.filter, offset=req.offset,
                                               with_payload=req.with_payload or False).model_dump(mode="json")
            case "POST", "/points/scroll":
                req = m.ScrollRequest.model_validate(body)
                records, offset = local.scroll(name, scroll_filter=req.filter, limit=req.limit or 10, offset=req.offset,
                                               with_payload=req.with_payload or False)
                return 200, {"points": [r.model_dump(mode="json") for r in records], "next_page_offset": offset}
            case "POST", "/points/count":
                req = m.CountRequest.model_validate(body)
                return 200, local.count(name, count_filter=req.filter, exact=True).model_dump(mode="json")
        return 404, {"error": f"no route {method} {path}"}

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                path = self.path.split("?", 1)[0]
                try:
                    with stand_in.lock:
                        status, result = stand_in.route(method, path, body)
                except Exception as err:
                    status, result = 400, {"error": f"{type(err).__name__}: {err}"}
                if path == "/":  # the root answers VersionInfo itself, without the envelope
                    payload = result
                elif status == 200:
                    payload = {"result": result, "status": "ok", "time": 0.0}
                else:
                    payload = {"status": result, "time": 0.0}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_PUT(self):  # noqa: N802
                self._serve("PUT")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

            def log_message(self, *args):
                pass

        return Handler
