"""The embedded store on qdrant-edge-py (Qdrant's own engine, in-process), behind the subset of
qdrant_client's API that Prism's embedded mode calls.

One `EdgeStore` is one store directory: one EdgeShard per collection under `<store>/<collection>/`,
beside it `prism_collection.json` (the vectors the collection was created with, as qdrant_client
describes them), and `<store>/.lock`, an exclusive `flock` held while the store is open, so a second
opener (another process, or a second store object on the same path) gets `StoreBusyError`.

Callers pass qdrant_client.models objects and get qdrant_client.models objects back (ids as `str`
for UUIDs, as qdrant_client gives them). What the adapter does not translate (a filter condition,
a query kind, a vector kind) raises TypeError naming it; nothing is silently dropped.

- Vector-less collections (the `<collection>__prism_files` companions): edge needs a vector, so the
  shard has a 1-d one, `VECTORLESS`, that no point carries and no caller sees.
- Search is exact (brute force, as qdrant_client's local mode), whatever index edge has built.
- Writes go to edge's write-ahead log (they survive a killed process); `flush()` and `close()`
  persist the segments.
- Thread safety: one lock around every call, so concurrent jobs and threads of one process (the
  driver upserting, a background reader, `prism serve`'s request threads) share one store.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

VECTORLESS = "__prism_vectorless"  # the 1-d vector of a vector-less collection's shard
CONFIG_FILE = "prism_collection.json"
LOCK_FILE = ".lock"
_IGNORED = {"wait", "timeout", "consistency", "ordering", "shard_key_selector"}  # no meaning in-process


class StoreBusyError(Exception):
    """Another process (or another store object of this one) holds the store."""


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


def _models() -> Any:
    from qdrant_client import models

    return models


def _no_extras(call: str, kwargs: dict[str, Any]) -> None:
    extra = sorted(k for k, v in kwargs.items() if k not in _IGNORED and v is not None)
    if extra:
        raise TypeError(f"EdgeStore.{call}: the embedded store does not support {', '.join(extra)}")


# -- ids, vectors, payload selectors ------------------------------------------------------------------

def _id_in(point_id: Any) -> Any:
    if isinstance(point_id, (int, uuid.UUID)):
        return point_id
    if isinstance(point_id, str):
        return str(uuid.UUID(point_id))  # a non-UUID string is a ValueError, as with qdrant_client
    raise TypeError(f"point id {point_id!r}: the embedded store takes UUID strings or integers")


def _id_out(point_id: Any) -> Any:
    return str(point_id) if isinstance(point_id, uuid.UUID) else point_id


def _payload_selector(with_payload: Any) -> Any:
    qm, edge = _models(), _edge()
    if isinstance(with_payload, bool):
        return with_payload
    if isinstance(with_payload, (list, tuple)):
        return list(with_payload)
    if isinstance(with_payload, qm.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(with_payload.include))
    if isinstance(with_payload, qm.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(with_payload.exclude))
    raise TypeError(f"with_payload={with_payload!r}: the embedded store takes a bool, a list of keys, "
                    "or PayloadSelectorInclude/Exclude")


# -- filters ------------------------------------------------------------------------------------------

def _conditions(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return [to_edge_condition(c) for c in (value if isinstance(value, list) else [value])]


def to_edge_filter(where: Any) -> Any:
    """A qdrant_client Filter (or its JSON form) as an edge Filter; None stays None."""
    qm, edge = _models(), _edge()
    if where is None:
        return None
    if isinstance(where, dict):
        where = qm.Filter.model_validate(where)
    if not isinstance(where, qm.Filter):
        raise TypeError(f"filter {type(where).__name__}: the embedded store takes a qdrant_client Filter")
    min_should = None
    if where.min_should is not None:
        min_should = edge.MinShould(_conditions(where.min_should.conditions) or [], where.min_should.min_count)
    return edge.Filter(must=_conditions(where.must), should=_conditions(where.should),
                       must_not=_conditions(where.must_not), min_should=min_should)


def _match(match: Any) -> Any:
    qm, edge = _models(), _edge()
    simple = {qm.MatchValue: ("value", edge.MatchValue), qm.MatchText: ("text", edge.MatchText),
              qm.MatchTextAny: ("text_any", edge.MatchTextAny), qm.MatchPhrase: ("phrase", edge.MatchPhrase),
              qm.MatchPrefix: ("prefix", edge.MatchPrefix), qm.MatchSubstring: ("substring", edge.MatchSubstring),
              qm.MatchAny: ("any", edge.MatchAny), qm.MatchExcept: ("except_", edge.MatchExcept)}
    for kind, (field, make) in simple.items():
        if type(match) is kind:
            value = getattr(match, field)
            return make(list(value) if isinstance(value, (list, tuple)) else value)
    raise TypeError(f"match {type(match).__name__}: the embedded store cannot translate this match")


def _range(rng: Any) -> Any:
    qm, edge = _models(), _edge()
    if isinstance(rng, qm.Range):
        return edge.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)
    if isinstance(rng, qm.DatetimeRange):
        def iso(v: Any) -> str | None:
            return None if v is None else (v if isinstance(v, str) else v.isoformat())
        return edge.RangeDateTime(gte=iso(rng.gte), gt=iso(rng.gt), lte=iso(rng.lte), lt=iso(rng.lt))
    raise TypeError(f"range {type(rng).__name__}: the embedded store cannot translate this range")


def _field(cond: Any) -> Any:
    edge = _edge()
    unsupported = [f for f in ("geo_bounding_box", "geo_radius", "geo_polygon") if getattr(cond, f) is not None]
    if unsupported:
        raise TypeError(f"FieldCondition on {cond.key!r} with {unsupported[0]}: the embedded store does not "
                        "translate geo conditions")
    values = cond.values_count
    count = None if values is None else edge.ValuesCount(lt=values.lt, gt=values.gt, lte=values.lte, gte=values.gte)
    return edge.FieldCondition(cond.key, match=None if cond.match is None else _match(cond.match),
                               range=None if cond.range is None else _range(cond.range), values_count=count,
                               is_empty=cond.is_empty, is_null=cond.is_null)


def to_edge_condition(cond: Any) -> Any:
    """One condition of a qdrant_client Filter as edge's; TypeError for a form not translated."""
    qm, edge = _models(), _edge()
    if isinstance(cond, qm.Filter):
        return to_edge_filter(cond)
    if isinstance(cond, qm.FieldCondition):
        return _field(cond)
    if isinstance(cond, qm.IsEmptyCondition):
        return edge.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, qm.IsNullCondition):
        return edge.IsNullCondition(cond.is_null.key)
    if isinstance(cond, qm.HasIdCondition):
        return edge.HasIdCondition({_id_in(i) for i in cond.has_id})
    if isinstance(cond, qm.HasVectorCondition):
        return edge.HasVectorCondition(cond.has_vector)
    if isinstance(cond, qm.NestedCondition):
        return edge.NestedCondition(cond.nested.key, to_edge_filter(cond.nested.filter))
    raise TypeError(f"filter condition {type(cond).__name__}: the embedded store cannot translate it")


def _selector(selector: Any) -> tuple[list[Any] | None, Any]:
    """(ids, None) or (None, edge filter) for a points selector as qdrant_client takes them."""
    qm = _models()
    if isinstance(selector, qm.PointIdsList):
        return [_id_in(i) for i in selector.points], None
    if isinstance(selector, qm.FilterSelector):
        return None, to_edge_filter(selector.filter)
    if isinstance(selector, qm.Filter):
        return None, to_edge_filter(selector)
    if isinstance(selector, (list, tuple)):
        return [_id_in(i) for i in selector], None
    raise TypeError(f"points selector {type(selector).__name__}: the embedded store takes a list of ids, "
                    "PointIdsList, FilterSelector or Filter")


# -- collection configs -------------------------------------------------------------------------------

_DISTANCES = {"Cosine": "Cosine", "Euclid": "Euclid", "Dot": "Dot", "Manhattan": "Manhattan"}


def _vectors_json(vectors_config: Any) -> dict[str, Any]:
    """What a collection was created with, as stored in prism_collection.json."""
    qm = _models()

    def one(params: Any, name: str) -> dict[str, Any]:
        if not isinstance(params, qm.VectorParams):
            raise TypeError(f"vector {name!r}: the embedded store takes qdrant_client VectorParams")
        if params.multivector_config is not None:
            raise TypeError(f"vector {name!r}: the embedded store does not support multivectors")
        return {"size": params.size, "distance": qm.Distance(params.distance).value}

    if vectors_config is None or (isinstance(vectors_config, Mapping) and not vectors_config):
        return {"kind": "none"}
    if isinstance(vectors_config, Mapping):
        return {"kind": "named", "vectors": {n: one(p, n) for n, p in vectors_config.items()}}
    return {"kind": "unnamed", "vectors": {"": one(vectors_config, "")}}


def _edge_config(config: dict[str, Any]) -> Any:
    edge = _edge()
    if config["kind"] == "none":
        return edge.EdgeConfig(vectors={VECTORLESS: edge.EdgeVectorParams(size=1, distance=edge.Distance.Dot)})
    params = {n: edge.EdgeVectorParams(size=v["size"], distance=getattr(edge.Distance, _DISTANCES[v["distance"]]))
              for n, v in config["vectors"].items()}
    return edge.EdgeConfig(vectors=params[""] if config["kind"] == "unnamed" else params)


def _dense(vector: Any, point_id: Any, name: str) -> list[float]:
    if hasattr(vector, "tolist"):
        vector = vector.tolist()
    if not isinstance(vector, list) or (vector and isinstance(vector[0], list)):
        raise TypeError(f"point {point_id}, vector {name!r}: the embedded store takes dense vectors (a list of "
                        f"floats), not {type(vector).__name__}")
    return vector


class _Collection:
    def __init__(self, shard: Any, config: dict[str, Any]):
        self.shard = shard
        self.config = config

    @property
    def vectorless(self) -> bool:
        return self.config["kind"] == "none"

    def vector_in(self, vector: Any, point_id: Any) -> Any:
        qm = _models()
        kind = self.config["kind"]
        if vector is None or (isinstance(vector, Mapping) and not vector):
            return {}
        if kind == "none":
            raise ValueError(f"point {point_id}: the collection has no vectors, so a point carries none (vector={{}})")
        if isinstance(vector, Mapping):
            return {name: _dense(v, point_id, name) for name, v in vector.items()}
        if isinstance(vector, qm.SparseVector):
            raise TypeError(f"point {point_id}: the embedded store takes dense vectors, not SparseVector")
        return _dense(vector, point_id, "")

    def vector_out(self, vector: Any) -> Any:
        if vector is None:
            return None
        if self.vectorless:
            return {}
        if self.config["kind"] == "unnamed" and isinstance(vector, dict):
            return vector.get("")
        return vector


class EdgeStore:
    """A qdrant_client-compatible store on qdrant-edge-py (the subset Prism calls); see the module."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # OSError on a read-only store
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreBusyError(f"{self.path} is locked by another opener") from err
            raise
        self._fd: int | None = fd

    # -- lifecycle ----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Persist every open collection's segments (the write-ahead log already holds the writes)."""
        with self._lock:
            for col in self._collections.values():
                col.shard.flush()

    def close(self) -> None:
        """Flush and close every collection and release the store's lock. Idempotent."""
        with self._lock:
            collections, self._collections = list(self._collections.values()), {}
            try:
                for col in collections:
                    try:
                        col.shard.flush()
                    finally:
                        col.shard.close()
            finally:
                if self._fd is not None:
                    os.close(self._fd)  # releases the flock
                    self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    # -- collections --------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise ValueError(f"collection name {name!r}: the embedded store keeps a collection in a directory "
                             "of that name, so it must not be empty, start with '.', or contain '/' or '\\'")
        return self.path / name

    def _open(self, name: str) -> _Collection:
        if self._fd is None:
            raise RuntimeError(f"the embedded store {self.path} is closed")
        col = self._collections.get(name)
        if col is None:
            folder = self._dir(name)
            if not (folder / CONFIG_FILE).is_file():
                raise ValueError(f"Collection {name} not found")
            config = json.loads((folder / CONFIG_FILE).read_text())
            col = self._collections[name] = _Collection(_edge().EdgeShard.load(str(folder)), config)
        return col

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        _no_extras("collection_exists", kwargs)
        with self._lock:
            return (self._dir(collection_name) / CONFIG_FILE).is_file()

    def get_collections(self, **kwargs: Any) -> Any:
        qm = _models()
        _no_extras("get_collections", kwargs)
        with self._lock:
            names = sorted(p.name for p in self.path.iterdir() if (p / CONFIG_FILE).is_file())
        return qm.CollectionsResponse(collections=[qm.CollectionDescription(name=n) for n in names])

    def create_collection(self, collection_name: str, vectors_config: Any = None,
                          sparse_vectors_config: Any = None, **kwargs: Any) -> bool:
        """Named dense vectors (a dict), one unnamed vector, or none ({} or None). Tuning options
        (hnsw_config, on_disk_payload, ...) are ignored, as qdrant_client's local mode ignores them."""
        if sparse_vectors_config:
            raise TypeError("EdgeStore.create_collection: the embedded store does not support sparse vectors")
        config = _vectors_json(vectors_config)
        with self._lock:
            folder = self._dir(collection_name)
            if (folder / CONFIG_FILE).is_file():
                raise ValueError(f"Collection {collection_name} already exists")
            shutil.rmtree(folder, ignore_errors=True)  # a half-made one (a crash between the two steps)
            shard = _edge().EdgeShard.create(str(folder), _edge_config(config))
            tmp = folder / (CONFIG_FILE + ".tmp")
            tmp.write_text(json.dumps(config))
            tmp.replace(folder / CONFIG_FILE)  # the collection exists once this is in place
            self._collections[collection_name] = _Collection(shard, config)
        return True

    def delete_collection(self, collection_name: str, **kwargs: Any) -> bool:
        _no_extras("delete_collection", kwargs)
        with self._lock:
            folder = self._dir(collection_name)
            col = self._collections.pop(collection_name, None)
            if col is not None:
                col.shard.close()
            if not folder.exists():
                return False
            (folder / CONFIG_FILE).unlink(missing_ok=True)  # gone for readers before the files go
            shutil.rmtree(folder)
            return True

    def get_collection(self, collection_name: str, **kwargs: Any) -> Any:
        """A qdrant_client CollectionInfo with config.params.vectors, points_count and payload_schema."""
        qm = _models()
        _no_extras("get_collection", kwargs)
        with self._lock:
            col = self._open(collection_name)
            info = col.shard.info()
            config = col.config
            vectors = {n: qm.VectorParams(size=v["size"], distance=qm.Distance(v["distance"]))
                       for n, v in config.get("vectors", {}).items()}
            schema = {k: qm.PayloadIndexInfo(data_type=qm.PayloadSchemaType(str(v.data_type).rsplit(".", 1)[-1].lower()), points=v.points)
                      for k, v in info.payload_schema.items()}
            params = qm.CollectionParams(vectors=vectors[""] if config["kind"] == "unnamed" else vectors)
            return qm.CollectionInfo.model_construct(
                status=qm.CollectionStatus.GREEN, optimizer_status=qm.OptimizersStatusOneOf.OK,
                points_count=info.points_count, indexed_vectors_count=info.indexed_vectors_count,
                segments_count=info.segments_count, config=qm.CollectionConfig.model_construct(params=params),
                payload_schema=schema)

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None,
                             field_type: Any = None, **kwargs: Any) -> Any:
        qm = _models()
        _no_extras("create_payload_index", kwargs)
        schema = field_schema if field_schema is not None else field_type
        try:
            kind = qm.PayloadSchemaType(schema)
        except ValueError:
            raise TypeError(f"create_payload_index {field_name!r}: the embedded store takes a PayloadSchemaType, "
                            f"not {schema!r}") from None
        op = _edge().UpdateOperation.create_field_index(field_name, getattr(_edge().PayloadSchemaType,
                                                                            kind.value.capitalize()))
        return self._update(collection_name, op)

    # -- points -------------------------------------------------------------------------------------

    def _update(self, collection_name: str, op: Any) -> Any:
        qm = _models()
        with self._lock:
            self._open(collection_name).shard.update(op)
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    def upsert(self, collection_name: str, points: Sequence[Any], update_filter: Any = None,
               update_mode: Any = None, **kwargs: Any) -> Any:
        qm, edge = _models(), _edge()
        _no_extras("upsert", kwargs)
        if not isinstance(points, (list, tuple)):
            raise TypeError(f"upsert: the embedded store takes a list of PointStruct, not {type(points).__name__}")
        with self._lock:
            col = self._open(collection_name)
            made = []
            for p in points:
                if not isinstance(p, qm.PointStruct):
                    raise TypeError(f"upsert: the embedded store takes PointStruct, not {type(p).__name__}")
                made.append(edge.Point(_id_in(p.id), col.vector_in(p.vector, p.id), p.payload or {}))
            mode = None if update_mode is None else getattr(edge.UpdateMode, {
                "upsert": "Upsert", "insert_only": "InsertOnly", "update_only": "UpdateOnly"}[qm.UpdateMode(update_mode).value])
            if made:
                col.shard.update(edge.UpdateOperation.upsert_points(made, condition=to_edge_filter(update_filter),
                                                                    update_mode=mode))
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    def delete(self, collection_name: str, points_selector: Any, **kwargs: Any) -> Any:
        _no_extras("delete", kwargs)
        ids, where = _selector(points_selector)
        ops = _edge().UpdateOperation
        return self._update(collection_name, ops.delete_points(ids) if ids is not None
                            else ops.delete_points_by_filter(where))

    def set_payload(self, collection_name: str, payload: dict[str, Any], points: Any, key: str | None = None,
                    **kwargs: Any) -> Any:
        _no_extras("set_payload", kwargs)
        ids, where = _selector(points)
        ops = _edge().UpdateOperation
        return self._update(collection_name, ops.set_payload(ids, payload, key) if ids is not None
                            else ops.set_payload_by_filter(where, payload, key))

    def _records(self, col: _Collection, found: Iterable[Any]) -> list[Any]:
        qm = _models()
        return [qm.Record.model_construct(id=_id_out(r.id), payload=r.payload, vector=col.vector_out(r.vector),
                                          shard_key=None, order_value=None) for r in found]

    def _with_vectors(self, col: _Collection, with_vectors: Any) -> Any:
        if col.vectorless or not with_vectors:
            return False
        if isinstance(with_vectors, (list, tuple)):
            return list(with_vectors)
        return True

    def retrieve(self, collection_name: str, ids: Sequence[Any], with_payload: Any = True,
                 with_vectors: Any = False, **kwargs: Any) -> list[Any]:
        _no_extras("retrieve", kwargs)
        wanted = [_id_in(i) for i in ids]
        with self._lock:
            col = self._open(collection_name)
            found = col.shard.retrieve(wanted, _payload_selector(with_payload), self._with_vectors(col, with_vectors))
            records = self._records(col, found)
        if with_vectors and col.vectorless:
            for r in records:
                r.vector = {}
        return records

    def scroll(self, collection_name: str, scroll_filter: Any = None, limit: int = 10, order_by: Any = None,
               offset: Any = None, with_payload: Any = True, with_vectors: Any = False,
               **kwargs: Any) -> tuple[list[Any], Any]:
        """(records in id order, the next page's offset or None), as qdrant_client's scroll."""
        _no_extras("scroll", {"order_by": order_by, **kwargs})
        start = None if offset is None else _id_in(offset)
        where = to_edge_filter(scroll_filter)
        with self._lock:
            col = self._open(collection_name)
            request = _edge().ScrollRequest(offset=start, limit=limit, filter=where,
                                            with_payload=_payload_selector(with_payload),
                                            with_vector=self._with_vectors(col, with_vectors))
            found, next_offset = col.shard.scroll(request)
            records = self._records(col, found)
        if with_vectors and col.vectorless:
            for r in records:
                r.vector = {}
        return records, None if next_offset is None else _id_out(next_offset)

    def count(self, collection_name: str, count_filter: Any = None, exact: bool = True, **kwargs: Any) -> Any:
        qm = _models()
        _no_extras("count", kwargs)
        request = _edge().CountRequest(exact=True, filter=to_edge_filter(count_filter))
        with self._lock:
            return qm.CountResult(count=self._open(collection_name).shard.count(request))

    def query_points(self, collection_name: str, query: Any = None, using: str | None = None,
                     query_filter: Any = None, search_params: Any = None, limit: int = 10, offset: int | None = None,
                     with_payload: Any = True, with_vectors: Any = False, score_threshold: float | None = None,
                     **kwargs: Any) -> Any:
        """Nearest points to a dense vector (a list, an array or NearestQuery), by exact search:
        search_params are not needed (edge's HNSW index, where built, is never used)."""
        qm, edge = _models(), _edge()
        _no_extras("query_points", kwargs)
        if isinstance(query, qm.NearestQuery):
            query = query.nearest
        if hasattr(query, "tolist"):
            query = query.tolist()
        if not isinstance(query, (list, tuple)) or not all(isinstance(x, (int, float)) for x in query):
            raise TypeError(f"query_points: the embedded store takes a dense vector (a list of floats or "
                            f"NearestQuery), not {type(query).__name__}")
        where = to_edge_filter(query_filter)
        with self._lock:
            col = self._open(collection_name)
            if col.vectorless:
                raise ValueError(f"collection {collection_name!r} has no vectors to search")
            request = edge.QueryRequest(limit=limit, offset=offset, query=edge.Query.Nearest(
                [float(x) for x in query], using=using), with_vector=self._with_vectors(col, with_vectors),
                with_payload=_payload_selector(with_payload), filter=where, score_threshold=score_threshold,
                params=edge.SearchParams(exact=True))
            found = col.shard.query(request)
            points = [qm.ScoredPoint.model_construct(id=_id_out(p.id), version=p.version, score=p.score,
                                                     payload=p.payload, vector=col.vector_out(p.vector),
                                                     shard_key=None, order_value=None) for p in found]
        from qdrant_client.http.models import QueryResponse  # (models.QueryResponse is fastembed's)

        return QueryResponse.model_construct(points=points)
