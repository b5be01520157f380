"""Embedded store: qdrant-client's local mode (what `prism run` uses today) against qdrant-edge-py
(Qdrant's own engine in-process), side by side in one run, each into a fresh temp dir.

- write throughput: the same points (uuid5 ids as Prism makes them, one named cosine vector "text",
  Prism-like payloads) upserted in batches of --batch-size; local mode with
  `QdrantClient.upsert(..., wait=True)` as the sink does, edge with `EdgeShard.update(upsert_points)`
  and one `flush()` at the end, inside the timer (and, as a second edge figure, a `flush()` after
  every batch: the closest to local mode's write-through per upsert). Point objects are built outside the timer for both;
  --repeats fresh stores each, interleaved, best kept;
- search: 50 query vectors, top-10 by "text" (default search parameters of each): how many queries
  get the identical id list in the identical order, and the largest score difference;
- persistence: both stores closed and reopened from disk (reopen time), point count, 5 queries
  re-run (same ids as before the close);
- Prism's other operations on the reopened stores: count with the failed-extractors filter
  (must_not is_empty), delete by uri MatchAny, counts compared; and whether a second process can
  open a store that is open (both are meant to refuse).

    PYTHONPATH=/tmp/edge-pkgs .venv/bin/python benchmarks/embedded_store.py [--points 20000] [--dim 384]
        [--repeats 3]

qdrant-edge-py is not a project dependency: install it outside the venv
(`.venv/bin/pip install --target /tmp/edge-pkgs qdrant-edge-py==0.9.0`). Without it the script says so
and measures local mode only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "bench"
VECTOR = "text"
QUERIES = 50
TOP = 10
REOPEN_QUERIES = 5
try:
    import qdrant_edge as E
except ImportError:
    E = None


def make_data(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((QUERIES, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids, payloads = [], []
    for i in range(n):
        file_no, chunk = divmod(i, 8)
        uri = f"s3://bench/docs/file-{file_no}.pdf"
        key = f"{uri}#page=1&chunk={chunk}"
        digest = uuid.uuid5(uuid.NAMESPACE_URL, uri).hex
        ids.append(str(uuid.uuid5(uuid.UUID(hex=digest), key)))  # as prism_pipeline.points.point_id
        payloads.append({
            "uri": uri, "key": key, "content_hash": digest, "modality": "text", "file_modality": "document",
            "page": 1, "chunk": chunk, "text": f"chunk {i:06d} " + "lorem ipsum dolor sit amet " * 3,
            "failed_extractors": ["faces"] if i % 7 == 0 else [],
        })
    return ids, vectors, payloads, queries


# --- qdrant-client local mode ------------------------------------------------------------------

def local_open(path: Path, dim: int, create: bool) -> Any:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(path=str(path))
    if create:
        client.create_collection(COLLECTION, vectors_config={
            VECTOR: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)})
    return client


def local_points(ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> list[Any]:
    from qdrant_client import models as qm

    return [qm.PointStruct(id=i, vector={VECTOR: v.tolist()}, payload=p)
            for i, v, p in zip(ids, vectors, payloads, strict=True)]


def local_write(client: Any, points: list[Any], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(points), batch):
        client.upsert(COLLECTION, points=points[i:i + batch], wait=True)
    return time.perf_counter() - started


def local_search(client: Any, query: np.ndarray) -> list[tuple[str, float]]:
    found = client.query_points(COLLECTION, query=query.tolist(), using=VECTOR, limit=TOP).points
    return [(str(p.id), float(p.score)) for p in found]


def local_count(client: Any, failed: bool = False) -> int:
    from qdrant_client import models as qm

    where = qm.Filter(must_not=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key="failed_extractors"))])
    return client.count(COLLECTION, count_filter=where if failed else None, exact=True).count


def local_delete_uris(client: Any, uris: list[str]) -> None:
    from qdrant_client import models as qm

    client.delete(COLLECTION, wait=True, points_selector=qm.FilterSelector(filter=qm.Filter(
        must=[qm.FieldCondition(key="uri", match=qm.MatchAny(any=uris))])))


# --- qdrant-edge-py ----------------------------------------------------------------------------

def edge_open(path: Path, dim: int, create: bool) -> Any:
    if create:
        config = E.EdgeConfig(vectors={VECTOR: E.EdgeVectorParams(size=dim, distance=E.Distance.Cosine)})
        return E.EdgeShard.create(str(path), config)
    return E.EdgeShard.load(str(path))


def edge_points(ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> list[Any]:
    return [E.Point(i, {VECTOR: v.tolist()}, p) for i, v, p in zip(ids, vectors, payloads, strict=True)]


def edge_write(shard: Any, points: list[Any], batch: int, flush_each: bool = False) -> float:
    started = time.perf_counter()
    for i in range(0, len(points), batch):
        shard.update(E.UpdateOperation.upsert_points(points[i:i + batch]))
        if flush_each:
            shard.flush()
    shard.flush()
    return time.perf_counter() - started


def edge_search(shard: Any, query: np.ndarray, exact: bool = False) -> list[tuple[str, float]]:
    found = shard.query(E.QueryRequest(limit=TOP, query=E.Query.Nearest(query.tolist(), using=VECTOR),
                                       params=E.SearchParams(exact=exact)))
    return [(str(p.id), float(p.score)) for p in found]


def edge_count(shard: Any, failed: bool = False) -> int:
    where = E.Filter(must_not=[E.IsEmptyCondition("failed_extractors")]) if failed else None
    return shard.count(E.CountRequest(exact=True, filter=where))


def edge_delete_uris(shard: Any, uris: list[str]) -> None:
    shard.update(E.UpdateOperation.delete_points_by_filter(
        E.Filter(must=[E.FieldCondition("uri", match=E.MatchAny(uris))])))


# --- comparison --------------------------------------------------------------------------------

def compare(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> dict[str, Any]:
    same_order = sum([i for i, _ in x] == [i for i, _ in y] for x, y in zip(a, b, strict=True))
    same_set = sum({i for i, _ in x} == {i for i, _ in y} for x, y in zip(a, b, strict=True))
    diffs = [abs(sx - sy) for x, y in zip(a, b, strict=True) for (_, sx), (_, sy) in zip(x, y, strict=False)]
    return {"queries": len(a), "identical_ids_and_order": same_order, "identical_id_sets": same_set,
            "max_score_diff": float(max(diffs)) if diffs else None}


def second_process_refused(kind: str, path: Path) -> str:
    """Try to open `path` from another process while this one holds it."""
    code = (f"from qdrant_client import QdrantClient; QdrantClient(path={str(path)!r})" if kind == "local"
            else f"import qdrant_edge as E; E.EdgeShard.load({str(path)!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return "opened (no lock)"
    return "refused: " + (done.stderr.strip().splitlines() or ["?"])[-1][:160]


def dir_mb(path: Path) -> dict[str, float]:
    """Apparent size and allocated size (edge preallocates sparse mmap files)."""
    files = [f.stat() for f in path.rglob("*") if f.is_file()]
    return {"apparent": round(sum(s.st_size for s in files) / 2**20, 1),
            "allocated": round(sum(s.st_blocks * 512 for s in files) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import qdrant_client

    if E is None:
        print("qdrant-edge-py is not importable (install it with `pip install --target /tmp/edge-pkgs "
              "qdrant-edge-py` and set PYTHONPATH=/tmp/edge-pkgs): measuring qdrant-client's local mode only",
              file=sys.stderr)
    from importlib.metadata import PackageNotFoundError, version
    try:
        edge_version = version("qdrant-edge-py") if E is not None else None
    except PackageNotFoundError:
        edge_version = "?"

    ids, vectors, payloads, queries = make_data(args.points, args.dim)
    work = Path(tempfile.mkdtemp(prefix="prism-embedded-"))
    result: dict[str, Any] = {"points": args.points, "dim": args.dim, "batch_size": args.batch_size,
                              "repeats": args.repeats, "qdrant_client": qdrant_client.__version__ if hasattr(
                                  qdrant_client, "__version__") else version("qdrant-client"),
                              "qdrant_edge_py": edge_version}

    local_pts = local_points(ids, vectors, payloads)
    edge_pts = edge_points(ids, vectors, payloads) if E is not None else None
    local_times, edge_times, edge_flush_times = [], [], []
    local_client = edge_shard = None
    for r in range(args.repeats):  # interleaved, fresh stores; the last pair stays open for the checks
        if local_client is not None:
            local_client.close()
        local_client = local_open(work / f"local-{r}", args.dim, create=True)
        local_times.append(local_write(local_client, local_pts, args.batch_size))
        assert local_count(local_client) == args.points
        if E is not None:
            if edge_shard is not None:
                edge_shard.close()
            edge_shard = edge_open(work / f"edge-{r}", args.dim, create=True)
            edge_times.append(edge_write(edge_shard, edge_pts, args.batch_size))
            assert edge_count(edge_shard) == args.points
            flushed = edge_open(work / f"edge-flush-{r}", args.dim, create=True)
            edge_flush_times.append(edge_write(flushed, edge_pts, args.batch_size, flush_each=True))
            assert edge_count(flushed) == args.points
            flushed.close()
    last = args.repeats - 1
    result["local_points_per_s"] = round(args.points / min(local_times))
    result["local_seconds"] = [round(t, 2) for t in local_times]
    if E is not None:
        result["edge_points_per_s"] = round(args.points / min(edge_times))
        result["edge_seconds"] = [round(t, 3) for t in edge_times]
        result["edge_over_local_write"] = round(min(local_times) / min(edge_times), 1)
        result["edge_flush_each_points_per_s"] = round(args.points / min(edge_flush_times))
        result["edge_flush_each_seconds"] = [round(t, 3) for t in edge_flush_times]
        result["edge_flush_each_over_local_write"] = round(min(local_times) / min(edge_flush_times), 1)

    started = time.perf_counter()
    local_hits = [local_search(local_client, q) for q in queries]
    result["local_ms_per_query"] = round((time.perf_counter() - started) * 1000 / QUERIES, 2)
    if E is not None:
        started = time.perf_counter()
        edge_hits = [edge_search(edge_shard, q) for q in queries]
        result["edge_ms_per_query"] = round((time.perf_counter() - started) * 1000 / QUERIES, 2)
        result["search_local_vs_edge"] = compare(local_hits, edge_hits)
        result["search_edge_default_vs_exact"] = compare(edge_hits, [edge_search(edge_shard, q, exact=True)
                                                                     for q in queries])
        result["lock_edge"] = second_process_refused("edge", work / f"edge-{last}")
    result["lock_local"] = second_process_refused("local", work / f"local-{last}")

    # persistence: close, reopen from disk, count, re-run queries
    local_client.close()
    started = time.perf_counter()
    local_client = local_open(work / f"local-{last}", args.dim, create=False)
    persisted = {"local_reopen_s": round(time.perf_counter() - started, 3),
                 "local_count": local_count(local_client),
                 "local_vs_before": compare(local_hits[:REOPEN_QUERIES],
                                            [local_search(local_client, q) for q in queries[:REOPEN_QUERIES]]),
                 "local_disk_mb": dir_mb(work / f"local-{last}")}
    if E is not None:
        edge_shard.close()
        started = time.perf_counter()
        edge_shard = edge_open(work / f"edge-{last}", args.dim, create=False)
        persisted |= {"edge_reopen_s": round(time.perf_counter() - started, 3),
                      "edge_count": edge_count(edge_shard),
                      "edge_vs_before": compare(edge_hits[:REOPEN_QUERIES],
                                               [edge_search(edge_shard, q) for q in queries[:REOPEN_QUERIES]]),
                      "edge_disk_mb": dir_mb(work / f"edge-{last}")}
    result["persistence"] = persisted

    # Prism's filters: failed-extractors count, delete by uri MatchAny (the first 10 files)
    uris = sorted({p["uri"] for p in payloads[:80]})
    ops = {"local_failed": local_count(local_client, failed=True)}
    local_delete_uris(local_client, uris)
    ops["local_after_delete"] = local_count(local_client)
    if E is not None:
        ops["edge_failed"] = edge_count(edge_shard, failed=True)
        edge_delete_uris(edge_shard, uris)
        ops["edge_after_delete"] = edge_count(edge_shard)
        edge_shard.close()
    local_client.close()
    result["prism_filters"] = ops
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
