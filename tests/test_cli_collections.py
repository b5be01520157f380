"""`prism collections` (list, show, delete, files) and, end to end as a user runs them, the two ways a
collection could silently go wrong (issue 15): another job's extractors, and files no longer there."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"


def prism(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PRISM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_message(result: subprocess.CompletedProcess, prefix: str = "prism collections: ") -> str:
    """stderr holds one line that starts with `prefix`, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def seed(state: Path, folder: Path, collection: str = "docs") -> list[str]:
    """A store with DOCS as files under `folder`, embedded by the real text extractor and recorded
    as finished (as `prism run` leaves it); returns their uris."""
    from prism_api import QdrantSink
    from prism_pipeline.sink import Sink
    from prism_pipeline.sink.embedded import close_embedded
    from tests.pipeline.stores import DOCS, content_hash, item_rows, outcomes, text_extractor

    sink = Sink(QdrantSink(collection=collection), [text_extractor()], state)
    try:
        sink.prepare()
        sink.write(outcomes(item_rows(DOCS, folder=str(folder)), [text_extractor()]))
        uris = [f"{folder}/{name}" for name in DOCS]
        sink.record([(u, content_hash(DOCS[u.rsplit("/", 1)[1]]), 1) for u in uris], "seeded")
        return uris
    finally:
        sink.close()
        close_embedded(state)


@pytest.fixture
def state(tmp_path):
    seed(tmp_path / "state", tmp_path / "media")
    return tmp_path / "state"


def test_list_show_and_files(state, tmp_path):
    from prism_pipeline.sink.edge_store import EdgeStore
    from prism_pipeline.sink.embedded import store_path

    raw = EdgeStore(store_path(state))  # a collection some other tool made
    raw.create_collection("foreign", vectors_config={})
    raw.close()

    listed = prism("collections", "list", "--state-dir", str(state))
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "POINTS", "FILES", "EXTRACTORS"]
    assert rows[1] == ["docs", "3", "3", "text"]
    assert rows[2][:3] == ["foreign", "0", "-"] and "not a Prism collection" in listed.stdout

    shown = prism("collections", "show", "docs", "--state-dir", str(state))
    assert shown.returncode == 0, shown.stderr
    from tests.pipeline.stores import text_extractor
    assert shown.stdout.splitlines()[0].split() == ["NAME", "KIND", "MODEL", "VERSION", "OUTPUT"]
    assert shown.stdout.splitlines()[1].split()[:2] == ["text", "text-embedding"]
    assert text_extractor().version in shown.stdout and "vector(384)" in shown.stdout

    # a relative path is resolved as `prism run` resolves a local source
    files = prism("collections", "files", "docs", "media/bees.txt", "--state-dir", str(state), cwd=tmp_path)
    assert files.returncode == 0, files.stderr
    assert files.stdout.startswith("media/bees.txt: 1 items") and "chunk=0" in files.stdout  # shown as given
    assert "Honeybees collect nectar" in files.stdout
    as_json = prism("collections", "files", "docs", f"file://{tmp_path}/media/bees.txt", "--json",
                    "--state-dir", str(state))
    found = json.loads(as_json.stdout)
    assert found["uri"] == str(tmp_path / "media/bees.txt") and found["record"]["items"] == 1
    assert [p["key"] for p in found["points"]] == [f"{tmp_path}/media/bees.txt#chunk=0"]
    assert "vector" not in json.dumps(found["points"])  # payloads only


def test_a_file_is_named_as_a_listing_names_it(tmp_path, monkeypatch):
    from prism_cli.cmd_collections import resolve

    monkeypatch.chdir(tmp_path)
    assert resolve("media/a.png") == resolve("./media/a.png") == str(tmp_path / "media/a.png")
    assert resolve("file:///data/a.png") == "/data/a.png"
    assert resolve("s3://bucket/dir/a.png") == resolve("s3a://bucket/dir/a.png") == "s3://bucket/dir/a.png"
    assert resolve("gs://bucket/a.png") == "gs://bucket/a.png"


def test_errors_are_one_message(state, tmp_path):
    missing = prism("collections", "list", "--state-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no embedded store" in one_message(missing)
    assert not (tmp_path / "nowhere").exists()
    unknown = prism("collections", "show", "nope", "--state-dir", str(state))
    assert unknown.returncode == 2 and "collections here: docs" in one_message(unknown)
    absent = prism("collections", "files", "docs", "media/never.txt", "--state-dir", str(state), cwd=tmp_path)
    assert absent.returncode == 2 and f"{tmp_path}/media/never.txt" in one_message(absent)
    server = prism("collections", "list", "--url", "http://127.0.0.1:9")  # nothing listens there
    assert server.returncode == 1 and "127.0.0.1:9" in one_message(server)


def test_delete_needs_yes_and_refuses_a_busy_store(state):
    asked = prism("collections", "delete", "docs", "--state-dir", str(state))
    assert asked.returncode == 2 and "--yes" in one_message(asked)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom prism_pipeline.sink.embedded import embedded_client\n"
        f"c = embedded_client({str(state)!r})\nprint('open', flush=True)\nsys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        busy = prism("collections", "delete", "docs", "--yes", "--state-dir", str(state))
        assert busy.returncode == 1 and "open in another process" in one_message(busy)
    finally:
        holder.communicate("", timeout=60)
    assert prism("collections", "show", "docs", "--state-dir", str(state)).returncode == 0  # still there

    deleted = prism("collections", "delete", "docs", "--yes", "--state-dir", str(state))
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted collection 'docs'" in deleted.stdout
    listed = prism("collections", "list", "--state-dir", str(state))
    assert listed.returncode == 0 and "docs" not in listed.stdout  # nor its companion


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_server_through_url(tmp_path):
    from prism_api import QdrantSink
    from prism_pipeline.sink import Sink
    from tests.pipeline.qdrant_server import QdrantStandIn
    from tests.pipeline.stores import DOCS, item_rows, outcomes, text_extractor

    server = QdrantStandIn()
    try:
        with Sink(QdrantSink(collection="docs", url=server.url), [text_extractor()], tmp_path) as sink:
            sink.prepare()
        server.local.upsert("docs", points=[o["point"] for o in outcomes(item_rows(DOCS), [text_extractor()])])
        listed = prism("collections", "list", "--url", server.url)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split() == ["docs", "3", "0", "text"]
        files = prism("collections", "files", "docs", "/docs/whales.txt", "--json", "--url", server.url)
        assert json.loads(files.stdout)["points"][0]["text"].startswith("Whales")
        assert prism("collections", "delete", "docs", "--yes", "--url", server.url).returncode == 0
        assert not server.local.collection_exists("docs") and not server.local.collection_exists("docs__prism_files")
    finally:
        server.close()


# -- end to end: `prism run` refuses other extractors; --delete-missing reconciles a moved folder ---------

JOB = """apiVersion: prism.dev/v1alpha1
kind: ExtractionJob
metadata:
  name: {name}
spec:
  source:
    uri: {uri}
  extractors: {extractors}
  sink:
    qdrant:
      collection: docs
"""


@pytest.mark.slow
def test_prism_run_refuses_other_extractors_and_deletes_missing_files(tmp_path):
    from tests.pipeline.stores import DOCS

    state = tmp_path / "state"
    seed(state, tmp_path / "old-media")  # the folder was then renamed:
    media = tmp_path / "media"
    media.mkdir()
    for name, text in DOCS.items():
        (media / name).write_text(text)

    faces = tmp_path / "faces.yaml"
    faces.write_text(JOB.format(name="faces", uri=media, extractors='[{name: faces, kind: face-detection}]'))
    refused = prism("run", str(faces), "--no-progress-bar", "--state-dir", str(state), timeout=300)
    assert refused.returncode == 1
    message = one_message(refused, prefix="prism: job faces failed: spec.sink.qdrant.collection: 'docs'")
    assert "'text' (text-embedding" in message and "'faces' (face-detection" in message
    assert "prism collections delete docs --yes" in message

    text = tmp_path / "text.yaml"
    text.write_text(JOB.format(name="text", uri=media, extractors='[{name: text, kind: text-embedding}]'))
    ran = prism("run", str(text), "--delete-missing", "--no-progress-bar", "--state-dir", str(state), timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert "3 removed" in ran.stdout + ran.stderr
    hits = prism("search", "anything at all", "--collection", "docs", "--limit", "10", "--state-dir", str(state))
    assert hits.returncode == 0, hits.stderr
    uris = [line.split()[1] for line in hits.stdout.splitlines()[1:]]
    assert sorted(uris) == sorted(str(media / name) for name in DOCS)  # one hit per file, none of the old folder
