"""The stream's source: files handed to Ray Data as the listing finds them.

The driver's listing thread (lister.py) puts blocks of file rows ({uri, size, prev_hash}) into a
bounded queue (a Ray actor); the job's dataset starts with one read task that takes them out and
yields each as a block, so the first files are decoding while the listing goes on, and neither side
holds more than FEED_BLOCKS blocks ahead of the other. The read task asks for no CPU: it only
moves small rows, and must never take a slot from a decode or a model.

Blocks group files so that a read task's fixed cost is shared by many small files, yet large files
still decode in parallel: a block closes at FILES_PER_BLOCK files or BLOCK_BYTES listed bytes,
whichever comes first (a video is a block of its own; a thousand one-line texts are sixteen). The
first blocks are smaller (1, 2, 4, ... files: `Blocker`'s slow start): a stage hands a block on only
when it has done the whole block, so a small job of slow items still spreads over several actors
and shows files finishing early, and a large job reaches full blocks after a few.
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


class Blocker:
    """Groups file rows into blocks (column lists), in order: at most the current cap of files (1 at
    first, doubling with each block up to `files`), and no more than `max_bytes` listed bytes unless
    one file alone is larger."""

    def __init__(self, files: int = FILES_PER_BLOCK, max_bytes: int = BLOCK_BYTES, first: int = 1):
        self._files, self._max_bytes, self._cap = files, max_bytes, max(1, min(first, files))

    def split(self, rows: list[dict[str, Any]]) -> Iterator[dict[str, list]]:
        block: list[dict[str, Any]] = []
        size = 0
        for row in rows:
            if block and (len(block) >= self._cap or size + int(row["size"]) > self._max_bytes):
                yield self._close(block)
                block, size = [], 0
            block.append(row)
            size += int(row["size"])
        if block:
            yield self._close(block)

    def _close(self, block: list[dict[str, Any]]) -> dict[str, list]:
        self._cap = min(self._cap * 2, self._files)
        return _columns(block)


def blocks(rows: list[dict[str, Any]], files: int = FILES_PER_BLOCK,
           max_bytes: int = BLOCK_BYTES) -> Iterator[dict[str, list]]:
    """`rows` in full blocks (no slow start)."""
    return Blocker(files, max_bytes, first=files).split(rows)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    return {c: [r[c] for r in rows] for c in COLUMNS}


def make_queue() -> Any:
    """The bounded queue between the listing thread and the read task (an actor without CPUs)."""
    from ray.util.queue import Queue

    return Queue(maxsize=FEED_BLOCKS, actor_options={"num_cpus": 0})


def dataset(queue: Any) -> Any:
    """The lazy dataset of the blocks put into `queue` until a None."""
    import ray

    _hand_on_as_yielded()
    return ray.data.read_datasource(FeedDatasource(queue), override_num_blocks=1, num_cpus=0)


def _hand_on_as_yielded() -> None:
    """Make the feed's read operator hand each block on as it is yielded.

    Ray Data shapes a read task's output: small yielded blocks are merged until the task ends or
    DataContext.target_max_block_size (128 MiB) is reached. That is right for a read task over a
    bounded file, and wrong here: the one feed task lives as long as the listing, so nothing would
    move until the listing ended. Ray Data plans every Read the same way and has no public option
    for this, so the Read plan function is wrapped, once per process, to turn shaping off for
    FeedDatasource reads only (as Ray does itself for its ListFiles operator). Ray is pinned
    (ray==2.60.0); tests/pipeline/test_streaming.py fails if a Ray upgrade breaks this."""
    from ray.data._internal.execution.operators.map_transformer import BlockMapTransformFn
    from ray.data._internal.logical.operators import Read
    from ray.data._internal.planner.planner import Planner

    planned = Planner._DEFAULT_PLAN_FNS[Read]
    if getattr(planned, "prism_feed", False):
        return

    def plan_read(op: Any, children: Any, context: Any) -> Any:
        physical = planned(op, children, context)
        if isinstance(getattr(op, "datasource_or_legacy_reader", None), FeedDatasource):
            for fn in physical._map_transformer._transform_fns:
                if isinstance(fn, BlockMapTransformFn):
                    fn._disable_block_shaping = True
        return physical

    plan_read.prism_feed = True  # type: ignore[attr-defined]
    Planner._DEFAULT_PLAN_FNS[Read] = plan_read


def _read(queue: Any) -> Iterator[Any]:
    import pyarrow as pa
    from ray.util.queue import Empty

    empty = pa.table({"uri": pa.array([], pa.string()), "size": pa.array([], pa.int64()),
                      "prev_hash": pa.array([], pa.string())})
    while True:
        try:
            columns = queue.get(block=True, timeout=FEED_WAIT_S)
        except Empty:
            continue
        if columns is None:
            return
        yield pa.table({"uri": pa.array(columns["uri"], pa.string()), "size": pa.array(columns["size"], pa.int64()),
                        "prev_hash": pa.array(columns["prev_hash"], pa.string())})
        # Ray Data hands a read task's block on only once the task yields the next one (or ends):
        # an empty block right behind each pushes it out now, however long the next page takes.
        yield empty


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
