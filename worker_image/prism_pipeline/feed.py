"""The stream's source: files handed to Ray Data as the listing finds them.

The driver's listing thread (lister.py) puts blocks of file rows ({uri, size, prev_hash}) into a
bounded queue (a Ray actor); the job's dataset starts with one read task that takes them out and
yields each as a block, so the first files are decoding while the listing goes on, and neither side
holds more than FEED_BLOCKS blocks ahead of the other. The read task asks for no CPU: it only
moves small rows, and must never take a slot from a decode or a model.

Blocks group files so that a read task's fixed cost is shared by many small files, yet large files
still decode in parallel: a block closes at FILES_PER_BLOCK files or BLOCK_BYTES listed bytes,
whichever comes first (a video is a block of its own; a thousand one-line texts are sixteen).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ray.data.datasource import Datasource

FILES_PER_BLOCK = 64
BLOCK_BYTES = 4 * 1024**2
FEED_BLOCKS = 64     # blocks the queue holds before the listing thread waits
FEED_WAIT_S = 1.0    # how long one queue call waits before looking again

COLUMNS = ("uri", "size", "prev_hash")


def blocks(rows: list[dict[str, Any]], files: int = FILES_PER_BLOCK,
           max_bytes: int = BLOCK_BYTES) -> Iterator[dict[str, list]]:
    """File rows grouped into blocks (column lists), in order: at most `files` files, and no more
    than `max_bytes` listed bytes unless one file alone is larger."""
    block: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        if block and (len(block) >= files or size + int(row["size"]) > max_bytes):
            yield _columns(block)
            block, size = [], 0
        block.append(row)
        size += int(row["size"])
    if block:
        yield _columns(block)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    return {c: [r[c] for r in rows] for c in COLUMNS}


def make_queue() -> Any:
    """The bounded queue between the listing thread and the read task (an actor without CPUs)."""
    from ray.util.queue import Queue

    return Queue(maxsize=FEED_BLOCKS, actor_options={"num_cpus": 0})


def dataset(queue: Any) -> Any:
    """The lazy dataset of the blocks put into `queue` until a None."""
    import ray

    return ray.data.read_datasource(FeedDatasource(queue), override_num_blocks=1, ray_remote_args={"num_cpus": 0})


def _read(queue: Any) -> Iterator[Any]:
    import pyarrow as pa
    from ray.util.queue import Empty

    while True:
        try:
            columns = queue.get(block=True, timeout=FEED_WAIT_S)
        except Empty:
            continue
        if columns is None:
            return
        yield pa.table({"uri": pa.array(columns["uri"], pa.string()), "size": pa.array(columns["size"], pa.int64()),
                        "prev_hash": pa.array(columns["prev_hash"], pa.string())})


class FeedDatasource(Datasource):
    """One read task that yields the queue's blocks until the listing thread puts None."""

    def __init__(self, queue: Any):
        self._queue = queue

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        queue = self._queue
        meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
        return [ReadTask(lambda: _read(queue), meta)]
