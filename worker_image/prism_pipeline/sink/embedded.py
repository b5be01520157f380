"""Embedded mode (`prism run`): Qdrant's local store under <state dir>/qdrant.

The local store takes an exclusive file lock, so exactly one process may open it: the driver.
Points are built in a Ray stage (so the pixels never travel to the driver) and the driver upserts
them. One client per path per process, shared by concurrent jobs of the same process.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

import numpy as np

from prism_pipeline import points as P
from prism_pipeline import rows as R

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()


class StoreBusyError(Exception):
    """Another process holds the embedded store."""


class StoreMissingError(Exception):
    """No run has made an embedded store there (a reader asked for it)."""


def store_path(state_dir: str | Path) -> Path:
    return (Path(state_dir) / "qdrant").resolve()


def store_exists(state_dir: str | Path) -> bool:
    """Whether a run has made a store under `state_dir` (opening one would create it)."""
    return store_path(state_dir).is_dir()


def embedded_client(state_dir: str | Path):
    """The process-wide client of the store under `state_dir`."""
    path = str(store_path(state_dir))
    with _LOCK:
        if path not in _CLIENTS:
            from qdrant_client import QdrantClient

            Path(path).mkdir(parents=True, exist_ok=True)
            try:
                _CLIENTS[path] = QdrantClient(path=path)
            except RuntimeError as err:  # portalocker: "Storage folder ... is already accessed"
                raise StoreBusyError(f"the embedded Qdrant store {path} is open in another process "
                                     f"(another `prism run`, `prism search`, or a `prism serve` serving it, which "
                                     f"holds the store until stopped); wait for it or use --state-dir ({err})") from err
        return _CLIENTS[path]


@atexit.register
def _close_all() -> None:
    """Close stores before interpreter teardown (the client's __del__ fails once imports are gone)."""
    with _LOCK:
        clients = list(_CLIENTS.values())
        _CLIENTS.clear()
    for client in clients:
        client.close()


def close_embedded(state_dir: str | Path) -> None:
    """Release the store under `state_dir` (its file lock), for every job of this process."""
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
