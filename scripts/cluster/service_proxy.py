#!/usr/bin/env python3
"""An HTTP forward proxy that stands in for cluster DNS and kube-proxy on a test machine.

Processes on this machine that would dial a Service by its cluster name (the KubeRay controller
calling `<head-svc>.<ns>.svc.cluster.local:8265`, the Prism operator reading
`<head-svc>.<ns>.svc:9090`) get `HTTP_PROXY` pointing here. Each request's host:port is looked up
in a routes file (JSON, re-read per request so tests can change it): first `"<host>:<port>"`, then
`"*:<port>"`; the value is the `127.0.0.1:<port>` that really serves it (a local Ray head's
dashboard, the pipeline's progress endpoint). Unrouted requests get 502 and are never dialled.
Stdlib only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "proxy-connection"}
UPSTREAM_TIMEOUT_S = 30


def route(routes: dict[str, str], host: str, port: int) -> str | None:
    target = routes.get(f"{host}:{port}") or routes.get(f"*:{port}")
    if target and not target.startswith(("127.", "localhost:")):
        return None  # loopback only: this proxy never leaves the machine
    return target


def make_handler(routes_file: Path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            if not self.path.startswith("http://"):
                self._answer(200 if self.path == "/healthz" else 404, b"ok\n" if self.path == "/healthz" else b"")
                return
            url = urlsplit(self.path)
            try:
                routes = json.loads(routes_file.read_text() or "{}")
            except (OSError, ValueError):
                routes = {}
            target = route(routes, url.hostname or "", url.port or 80)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if target is None:
                self._answer(502, f"no route for {url.hostname}:{url.port or 80}\n".encode())
                return
            host, _, port = target.partition(":")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = f"{url.hostname}:{url.port or 80}"
            path = url.path + (f"?{url.query}" if url.query else "")
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=UPSTREAM_TIMEOUT_S)
                conn.request(self.command, path or "/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
            except OSError as exc:
                self._answer(502, f"{target}: {exc}\n".encode())
                return
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _relay

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write(f"{self.command} {fmt % args}\n")

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--routes", type=Path, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.routes))
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
