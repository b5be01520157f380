"""Embedded mode (`prism run`): Qdrant's engine in-process (qdrant-edge-py) under <state dir>/qdrant-edge.

The store takes an exclusive file lock, so exactly one process may open it: the driver. Points are
built in a Ray stage (so the pixels never travel to the driver) and the driver upserts them. One
store object per path per process, shared by concurrent jobs of the same process (sink/edge_store.py
has the qdrant_client-compatible calls and the thread safety).

Stores written by earlier releases (qdrant-client's local mode, <state dir>/qdrant) are copied into
the new store once, on first open; the old directory is left as it was.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import threading
from pathlib import Path

import numpy as np

from prism_pipeline import points as P
from prism_pipeline import rows as R

from .edge_store import LOCK_FILE, EdgeStore, StoreBusyError

__all__ = ["StoreBusyError", "StoreMissingError", "build_points", "close_embedded", "copy_store",
           "embedded_client", "legacy_store_path", "store_exists", "store_path"]

log = logging.getLogger("prism")
_CLIENTS: dict[str, EdgeStore] = {}
_LOCK = threading.Lock()
MIGRATE_PAGE = 512  # points per scroll when copying a local-mode store


class StoreMissingError(Exception):
    """No run has made an embedded store there (a reader asked for it)."""


def store_path(state_dir: str | Path) -> Path:
    return (Path(state_dir) / "qdrant-edge").resolve()


def legacy_store_path(state_dir: str | Path) -> Path:
    """Where releases before the edge store kept it (qdrant-client's local mode)."""
    return (Path(state_dir) / "qdrant").resolve()


def store_exists(state_dir: str | Path) -> bool:
    """Whether a run has made a store under `state_dir` (opening one would create it); an old
    local-mode store counts: opening it migrates it."""
    return store_path(state_dir).is_dir() or legacy_store_path(state_dir).is_dir()


def _busy(path: Path | str, err: Exception) -> StoreBusyError:
    return StoreBusyError(f"the embedded Qdrant store {path} is open in another process "
                          f"(another `prism run`, `prism search`, or a `prism serve` serving it, which "
                          f"holds the store until stopped); wait for it or use --state-dir ({err})")


def embedded_client(state_dir: str | Path) -> EdgeStore:
    """The process-wide store under `state_dir` (created, or migrated from local mode, if missing)."""
    path = store_path(state_dir)
    with _LOCK:
        if str(path) not in _CLIENTS:
            migrate_local_store(state_dir)
            try:
                _CLIENTS[str(path)] = EdgeStore(path)
            except StoreBusyError as err:
                raise _busy(path, err) from err
        return _CLIENTS[str(path)]


def migrate_local_store(state_dir: str | Path) -> None:
    """Copy a local-mode store (<state>/qdrant) into a new edge store, once: every collection with its
    vectors config, points, payloads and vectors (file records and extractor records included).
    Built in <store>.migrating and renamed into place, so a crash leaves no half store; the old
    store is held (its lock) throughout and left unchanged."""
    old, new = legacy_store_path(state_dir), store_path(state_dir)
    if new.is_dir() or not old.is_dir():
        return
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    try:
        client = QdrantClient(path=str(old))
    except RuntimeError as err:  # portalocker: "Storage folder ... is already accessed"
        raise _busy(old, err) from err
    try:
        if new.is_dir():  # another process migrated it while this one waited for the lock
            return
        building = new.with_name(new.name + ".migrating")
        shutil.rmtree(building, ignore_errors=True)
        store = EdgeStore(building)
        counts = {}
        try:
            for name in sorted(c.name for c in client.get_collections().collections):
                store.create_collection(name, vectors_config=client.get_collection(name).config.params.vectors)
                counts[name], offset = 0, None
                while True:
                    page, offset = client.scroll(name, offset=offset, limit=MIGRATE_PAGE, with_payload=True,
                                                 with_vectors=True)
                    store.upsert(name, [qm.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload or {})
                                        for p in page])
                    counts[name] += len(page)
                    if offset is None or not page:
                        break
                if store.count(name).count != counts[name]:
                    raise RuntimeError(f"migrating collection {name!r}: copied {counts[name]} points but the new "
                                       f"store counts {store.count(name).count}")
        finally:
            store.close()
        (building / LOCK_FILE).unlink(missing_ok=True)
        building.rename(new)
    finally:
        client.close()
    what = ", ".join(f"{n} ({c} points)" for n, c in counts.items()) or "no collections"
    log.warning("prism: migrated the embedded store %s (qdrant-client local mode) to %s: %s; the old "
                "directory is no longer read and can be deleted", old, new, what)


def copy_store(state_dir: str | Path, to_state_dir: str | Path) -> None:
    """Copy the store under `state_dir` (the current one, else a local-mode one) under `to_state_dir`,
    without its lock file (a read-only store is read from such a copy)."""
    for path in (store_path, legacy_store_path):
        if path(state_dir).is_dir():
            shutil.copytree(path(state_dir), path(to_state_dir), ignore=shutil.ignore_patterns(LOCK_FILE))
            return
    raise FileNotFoundError(f"no embedded store under {state_dir}")


@atexit.register
def _close_all() -> None:
    """Close (flush) stores before interpreter teardown."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


def close_embedded(state_dir: str | Path) -> None:
    """Release the store under `state_dir` (flushed, its file lock released), for every job of this process."""
    path = str(store_path(state_dir))
    with _LOCK:
        client = _CLIENTS.pop(path, None)
    if client is not None:
        client.close()


def build_points(batch: dict[str, np.ndarray], *, vector_names: list[str], payload_names: list[str],
                 versions: dict[str, str]) -> dict[str, np.ndarray]:
    """map_batches function: item rows -> outcome rows carrying their points."""
    rows = R.from_batch(batch)
    outs, _ = P.rows_to_outcomes(rows, set(vector_names), set(payload_names), versions, with_points=True)
    return R.to_batch(outs) if outs else R.empty_batch()
