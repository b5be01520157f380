"""The embedded store on qdrant-edge-py (sink/edge_store.py, sink/embedded.py): every qdrant_client
call Prism makes on it, filters, the vector-less companion, persistence, the lock, the migration from
qdrant-client's local mode, concurrent threads, and hits identical to local mode's."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from prism_pipeline.sink.edge_store import VECTORLESS, EdgeStore, StoreBusyError
from prism_pipeline.sink.embedded import (
    close_embedded,
    copy_store,
    embedded_client,
    legacy_store_path,
    store_exists,
    store_path,
)

DIM = 8


def pid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"point-{i}"))


def payload(i: int) -> dict:
    return {"uri": f"/docs/f{i // 2}.txt", "key": f"k{i}", "content_hash": f"h{i % 3}", "page": i % 3,
            "modality": "text" if i % 2 else "image", "timestamp": float(i),
            "failed_extractors": ["faces"] if i % 4 == 0 else [], "nested": {"a": [1, 2.5, None]}}


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(client, name: str = "c", n: int = 20) -> np.ndarray:
    vs = vectors(n)
    client.create_collection(name, vectors_config={"text": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)})
    client.upsert(name, wait=True, points=[qm.PointStruct(id=pid(i), vector={"text": vs[i].tolist()}, payload=payload(i))
                                           for i in range(n)])
    return vs


@pytest.fixture
def store(tmp_path):
    s = EdgeStore(tmp_path / "store")
    yield s
    s.close()


def test_collections_and_their_vectors(store):
    assert not store.collection_exists("c") and store.get_collections().collections == []
    fill(store)
    store.create_collection("c__prism_files", vectors_config={})
    store.create_collection("plain", vectors_config=qm.VectorParams(size=3, distance=qm.Distance.DOT))
    assert [c.name for c in store.get_collections().collections] == ["c", "c__prism_files", "plain"]
    with pytest.raises(ValueError, match="already exists"):
        store.create_collection("c", vectors_config={})
    vecs = store.get_collection("c").config.params.vectors
    assert vecs["text"].size == DIM and vecs["text"].distance == qm.Distance.COSINE
    assert store.get_collection("c__prism_files").config.params.vectors == {}  # the dummy vector is invisible
    assert store.get_collection("plain").config.params.vectors.size == 3
    assert store.get_collection("c").points_count == 20
    store.create_payload_index("c", "uri", field_schema=qm.PayloadSchemaType.KEYWORD)
    assert "uri" in store.get_collection("c").payload_schema
    assert store.delete_collection("plain") and not store.collection_exists("plain")
    assert not store.delete_collection("plain")
    with pytest.raises(ValueError, match="Collection nope not found"):
        store.count("nope")
    with pytest.raises(ValueError, match="must not be empty"):
        store.collection_exists("../x")


def test_points_round_trip(store):
    vs = fill(store)
    found = store.retrieve("c", ids=[pid(3), pid(99), pid(0)], with_payload=True)
    assert [r.id for r in found] == [pid(3), pid(0)] and all(isinstance(r.id, str) for r in found)
    assert found[0].payload == payload(3) and found[0].vector is None
    [with_vec] = store.retrieve("c", ids=[pid(1)], with_payload=False, with_vectors=True)
    assert with_vec.payload is None and np.allclose(with_vec.vector["text"], vs[1], atol=1e-6)
    assert store.count("c", exact=True).count == 20

    page, offset = store.scroll("c", limit=7, with_payload=["uri"])
    assert len(page) == 7 and set(page[0].payload) == {"uri"} and isinstance(offset, str)
    seen = [p.id for p in page]
    while offset is not None:
        page, offset = store.scroll("c", offset=offset, limit=7, with_payload=qm.PayloadSelectorExclude(exclude=["nested"]))
        assert all("nested" not in p.payload for p in page)
        seen += [p.id for p in page]
    assert seen == sorted(pid(i) for i in range(20))

    store.set_payload("c", payload={"extra": 1}, points=[pid(2)])
    assert store.retrieve("c", ids=[pid(2)])[0].payload["extra"] == 1
    store.upsert("c", points=[qm.PointStruct(id=pid(2), vector={}, payload={"uri": "/x"})])  # no vector: allowed
    assert store.retrieve("c", ids=[pid(2)])[0].payload == {"uri": "/x"}

    store.delete("c", points_selector=qm.PointIdsList(points=[pid(2)]), wait=True)
    store.delete("c", points_selector=[pid(3)])
    assert store.count("c").count == 18
    hits = store.query_points("c", query=vs[5].tolist(), using="text", limit=3, with_payload=True).points
    assert hits[0].id == pid(5) and hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].payload == payload(5)
    assert hits[0].score >= hits[1].score >= hits[2].score
    nearest = store.query_points("c", query=qm.NearestQuery(nearest=vs[5]), using="text", limit=3, offset=1).points
    assert [h.id for h in nearest] == [h.id for h in hits[1:]] + [nearest[-1].id]
    with pytest.raises(TypeError, match="dense vector"):
        store.query_points("c", query=qm.FusionQuery(fusion=qm.Fusion.RRF), limit=3)
    with pytest.raises(TypeError, match="prefetch"):
        store.query_points("c", query=vs[0].tolist(), using="text", prefetch=[qm.Prefetch(query=[0.0] * DIM)])


def test_the_vectorless_companion(store):
    store.create_collection("f", vectors_config={})
    store.upsert("f", wait=True, points=[qm.PointStruct(id=pid(i), vector={}, payload={"uri": f"/u{i}", "items": i})
                                         for i in range(5)])
    assert store.count("f").count == 5
    page, offset = store.scroll("f", limit=10, with_payload=True, with_vectors=True)
    assert offset is None and [p.vector for p in page] == [{}] * 5
    assert store.retrieve("f", ids=[pid(1)], with_vectors=True)[0].vector == {}
    with pytest.raises(ValueError, match="no vectors"):
        store.upsert("f", points=[qm.PointStruct(id=pid(9), vector={"x": [1.0]}, payload={})])
    with pytest.raises(ValueError, match="no vectors to search"):
        store.query_points("f", query=[0.0], using=VECTORLESS)


def count(store, where) -> int:
    return store.count("c", count_filter=where, exact=True).count


def test_filters(store):
    fill(store)
    FC, F = qm.FieldCondition, qm.Filter
    assert count(store, F(must=[FC(key="uri", match=qm.MatchValue(value="/docs/f1.txt"))])) == 2
    assert count(store, F(must=[FC(key="page", match=qm.MatchValue(value=1))])) == 7
    assert count(store, F(must=[FC(key="uri", match=qm.MatchAny(any=["/docs/f1.txt", "/docs/f2.txt"]))])) == 4
    assert count(store, F(must=[FC(key="uri", match=qm.MatchExcept(**{"except": ["/docs/f1.txt"]}))])) == 18
    assert count(store, F(must=[FC(key="uri", match=qm.MatchPrefix(prefix="/docs/f1"))])) == 2
    assert count(store, F(must=[FC(key="uri", match=qm.MatchValue(value="/docs/f1.txt"))],
                          must_not=[FC(key="content_hash", match=qm.MatchValue(value="h2"))])) == 1
    assert count(store, F(should=[FC(key="page", match=qm.MatchValue(value=1)),
                                  FC(key="modality", match=qm.MatchAny(any=["image"]))])) == 7 + 10 - 3
    assert count(store, F(must=[F(should=[FC(key="page", match=qm.MatchValue(value=0))])])) == 7
    assert count(store, F(min_should=qm.MinShould(conditions=[FC(key="page", match=qm.MatchValue(value=0)),
                                                              FC(key="page", match=qm.MatchValue(value=1))],
                                                  min_count=1))) == 14
    assert count(store, F(must=[FC(key="timestamp", range=qm.Range(gte=3, lte=6))])) == 4
    assert count(store, F(must_not=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key="failed_extractors"))])) == 5
    assert count(store, F(must=[qm.HasIdCondition(has_id=[pid(1), pid(2)])])) == 2
    assert count(store, F.model_validate({"must": [{"key": "failed_extractors", "match": {"value": "faces"}}]})) == 5
    assert count(store, {"must_not": [{"is_empty": {"key": "failed_extractors"}}]}) == 5
    store.delete("c", points_selector=qm.FilterSelector(filter=F(must=[FC(key="page", match=qm.MatchValue(value=2))])))
    assert count(store, None) == 14
    page, _ = store.scroll("c", scroll_filter=F(must=[FC(key="page", match=qm.MatchValue(value=0))]), limit=100)
    assert {p.payload["page"] for p in page} == {0} and len(page) == 7
    hits = store.query_points("c", query=[1.0] * DIM, using="text", limit=100,
                              query_filter=F(must=[FC(key="page", match=qm.MatchValue(value=1))])).points
    assert len(hits) == 7 and {h.payload["page"] for h in hits} == {1}
    with pytest.raises(TypeError, match="geo"):
        count(store, F(must=[FC(key="loc", geo_radius=qm.GeoRadius(center=qm.GeoPoint(lon=0, lat=0), radius=1.0))]))
    with pytest.raises(TypeError, match="filter condition object: the embedded store cannot translate it"):
        count(store, F.model_construct(must=[object()]))


def test_data_survives_close_and_reopen(tmp_path):
    store = EdgeStore(tmp_path / "s")
    vs = fill(store)
    store.create_collection("c__prism_files", vectors_config={})
    store.upsert("c__prism_files", points=[qm.PointStruct(id=pid(0), vector={}, payload={"uri": "/a"})])
    before = [h.id for h in store.query_points("c", query=vs[0].tolist(), using="text", limit=5).points]
    store.close()
    assert store.closed
    with pytest.raises(RuntimeError, match="closed"):
        store.count("c")
    again = EdgeStore(tmp_path / "s")
    try:
        assert again.count("c").count == 20 and again.count("c__prism_files").count == 1
        assert [h.id for h in again.query_points("c", query=vs[0].tolist(), using="text", limit=5).points] == before
        assert again.get_collection("c__prism_files").config.params.vectors == {}
    finally:
        again.close()


def test_writes_survive_a_killed_process(tmp_path):
    """The write-ahead log keeps upserts that were never flushed (the process dies without closing)."""
    code = ("import os, uuid\nfrom qdrant_client import models as qm\n"
            "from prism_pipeline.sink.edge_store import EdgeStore\n"
            f"s = EdgeStore({str(tmp_path / 's')!r})\ns.create_collection('f', vectors_config={{}})\n"
            "s.upsert('f', points=[qm.PointStruct(id=str(uuid.uuid4()), vector={}, payload={'i': i}) for i in range(50)])\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    store = EdgeStore(tmp_path / "s")
    try:
        assert store.count("f").count == 50
    finally:
        store.close()


def test_a_store_is_exclusive_across_processes(tmp_path):
    state = tmp_path / "state"
    embedded_client(state).create_collection("c", vectors_config={})
    try:
        with pytest.raises(StoreBusyError):  # a second opener in this process too
            EdgeStore(store_path(state))
        code = (f"from prism_pipeline.sink.embedded import embedded_client\nembedded_client({str(state)!r})\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert other.returncode == 1
        assert "StoreBusyError: the embedded Qdrant store" in other.stderr and "open in another process" in other.stderr
    finally:
        close_embedded(state)
    done = subprocess.run([sys.executable, "-c", code + "print('opened')"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "opened" in done.stdout, done.stderr  # released


def test_a_local_mode_store_is_migrated_once(tmp_path, caplog):
    """A store written by qdrant-client's local mode (<state>/qdrant): the first open copies every
    collection (points, vectors, payloads, the vector-less records) into <state>/qdrant-edge."""
    state = tmp_path / "state"
    old = QdrantClient(path=str(legacy_store_path(state)))
    vs = fill(old, "docs", n=30)
    old.create_collection("docs__prism_files", vectors_config={})
    old.upsert("docs__prism_files", points=[qm.PointStruct(id=pid(i), vector={}, payload={"uri": f"/u{i}",
                                                                                          "fingerprint": "x"})
                                            for i in range(600)])  # more than one page
    local_hits = [h.id for h in old.query_points("docs", query=vs[3].tolist(), using="text", limit=10).points]
    old.close()
    assert store_exists(state) and not store_path(state).exists()

    with caplog.at_level("WARNING", logger="prism"):
        client = embedded_client(state)
    try:
        assert "migrated the embedded store" in caplog.text and "docs (30 points)" in caplog.text
        assert "docs__prism_files (600 points)" in caplog.text
        assert client.count("docs").count == 30 and client.count("docs__prism_files").count == 600
        assert client.retrieve("docs__prism_files", ids=[pid(599)])[0].payload == {"uri": "/u599", "fingerprint": "x"}
        assert [h.id for h in client.query_points("docs", query=vs[3].tolist(), using="text", limit=10).points] \
            == local_hits
        [p3] = client.retrieve("docs", ids=[pid(3)], with_vectors=True)
        assert p3.payload == payload(3) and np.allclose(p3.vector["text"], vs[3], atol=1e-6)
        client.upsert("docs__prism_files", points=[qm.PointStruct(id=pid(1000), vector={}, payload={})])
    finally:
        close_embedded(state)
    caplog.clear()
    with caplog.at_level("WARNING", logger="prism"):
        client = embedded_client(state)  # once: the new store is used from now on
    try:
        assert "migrated" not in caplog.text and client.count("docs__prism_files").count == 601
    finally:
        close_embedded(state)
    assert legacy_store_path(state).is_dir()  # left as it was
    copy_store(state, tmp_path / "copy")
    assert (store_path(tmp_path / "copy") / "docs").is_dir() and not (store_path(tmp_path / "copy") / ".lock").exists()


def test_a_writer_and_readers_in_threads(store):
    """The driver upserts while a background thread reads file records and others search."""
    store.create_collection("c", vectors_config={"text": qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)})
    store.create_collection("f", vectors_config={})
    errors: list[BaseException] = []
    vs = vectors(2000, seed=1)

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
        return run

    def writer():
        for start in range(0, 2000, 100):
            store.upsert("c", points=[qm.PointStruct(id=pid(i), vector={"text": vs[i].tolist()}, payload=payload(i))
                                      for i in range(start, start + 100)])
            store.upsert("f", points=[qm.PointStruct(id=pid(i), vector={}, payload={"uri": f"/u{i}"})
                                      for i in range(start, start + 100)])

    def records():
        for _ in range(30):
            found = store.retrieve("f", ids=[pid(i) for i in range(1000)], with_payload=True)
            assert all(r.payload["uri"].startswith("/u") for r in found)

    def searcher():
        for _ in range(50):
            hits = store.query_points("c", query=vs[0].tolist(), using="text", limit=5,
                                      query_filter=qm.Filter(must=[qm.FieldCondition(
                                          key="page", match=qm.MatchValue(value=0))])).points
            assert all(h.payload["page"] == 0 for h in hits)

    threads = [threading.Thread(target=guard(f)) for f in (writer, records, searcher, searcher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert store.count("c").count == 2000 and store.count("f").count == 2000


def test_hits_are_those_of_local_mode(tmp_path, store):
    """Exact search: the same ids in the same order as qdrant-client's local mode (brute force)."""
    rng = np.random.default_rng(7)
    n, dim = 3000, 32
    vs = rng.standard_normal((n, dim)).astype(np.float32)
    queries = rng.standard_normal((20, dim)).astype(np.float32)
    local = QdrantClient(path=str(tmp_path / "local"))
    try:
        for client in (local, store):
            client.create_collection("c", vectors_config={"v": qm.VectorParams(size=dim, distance=qm.Distance.COSINE)})
            for start in range(0, n, 500):
                client.upsert("c", points=[qm.PointStruct(id=pid(i), vector={"v": vs[i].tolist()}, payload={"i": i})
                                           for i in range(start, start + 500)])
        where = qm.Filter(must_not=[qm.FieldCondition(key="i", range=qm.Range(lt=100))])
        for q in queries:
            for f in (None, where):
                a = local.query_points("c", query=q.tolist(), using="v", limit=10, query_filter=f).points
                b = store.query_points("c", query=q.tolist(), using="v", limit=10, query_filter=f).points
                assert [p.id for p in a] == [p.id for p in b]
                assert np.allclose([p.score for p in a], [p.score for p in b], atol=1e-5)
    finally:
        local.close()
