"""Sink: points/s through Prism's Qdrant sink vs direct qdrant-client upserts of the same points,
embedded mode (the local store `prism run` uses), side by side in one run.

- sink (driver): what the driver does in a run: the sink stage's output batches as they arrive
  (outcome rows carrying built points) -> unpickle -> `Sink.write` (batched upserts of
  sink.batchSize, with bounded retries) into a fresh store. `build_points` runs upstream in a Ray
  stage, in parallel with these writes;
- sink (serial): the same, plus `build_points` (ids, named vectors, payload from item rows) in the
  same thread: an upper bound of the sink's total cost;
- direct: the same PointStruct objects, prebuilt outside the timer, upserted with
  the embedded store's own `upsert(..., wait=True)` (`embedded_client`, no Sink) in chunks of the
  same size into a fresh store.

    .venv/bin/python benchmarks/sink.py [--points 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prism_api import ExtractorSpec, QdrantSink  # noqa: E402
from prism_pipeline import rows as R  # noqa: E402
from prism_pipeline.extractors import build_all  # noqa: E402
from prism_pipeline.sink import Sink, point_fields  # noqa: E402
from prism_pipeline.sink.embedded import build_points, close_embedded, embedded_client  # noqa: E402

DIM = 384
STREAM_BATCH = 1024  # rows per Ray Data batch reaching the sink stage


def item_rows(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        file_no, chunk = divmod(i, 8)
        digest = hashlib.sha256(f"file-{file_no}".encode()).hexdigest()
        rows.append({
            "uri": f"s3://bench/docs/file-{file_no}.pdf", "key": f"s3://bench/docs/file-{file_no}.pdf#page=1&chunk={chunk}",
            "status": R.ITEM, "content_hash": digest, "file_modality": "document", "modality": "text",
            "text": "lorem ipsum " * 40, "page": 1, "chunk": chunk, "timestamp": None, "t_end": None, "frame": None,
            "outputs": {"text": rng.standard_normal(DIM).astype(np.float32),
                        "faces": {"count": 0, "boxes": [], "scores": []}},
            "errors": [], "file_items": 8, "bytes_read": 0, "decoded": True,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="sink.batchSize")
    args = parser.parse_args()


    extractors = build_all([ExtractorSpec(name="text", kind="text-embedding"),
                            ExtractorSpec(name="faces", kind="face-detection")])
    spec = QdrantSink(collection="bench", batch_size=args.batch_size)
    rows = item_rows(args.points)
    batches = [R.to_batch(rows[i:i + STREAM_BATCH]) for i in range(0, len(rows), STREAM_BATCH)]
    work = Path(tempfile.mkdtemp(prefix="prism-sink-"))

    def through_sink(state: Path, serial: bool) -> float:
        sink = Sink(spec, extractors, state)
        sink.prepare()
        arriving = batches if serial else built
        started = time.perf_counter()
        for batch in arriving:
            sink.write(R.from_batch(build_points(batch, **fields) if serial else batch))
        elapsed = time.perf_counter() - started
        assert sink.count() == args.points, sink.count()
        close_embedded(state)
        return elapsed

    fields = point_fields(extractors)  # what the sink stage is given
    built = [build_points(batch, **fields) for batch in batches]  # the sink stage's output batches
    points_for_direct = [o["point"] for b in built for o in R.from_batch(b) if o.get("point")]

    def direct(state: Path) -> float:
        sink = Sink(spec, extractors, state)
        sink.prepare()  # the same collection set-up, outside the timer
        client = embedded_client(state)  # the store `prism run` writes (qdrant-edge), without the Sink
        started = time.perf_counter()
        for i in range(0, len(points_for_direct), args.batch_size):
            client.upsert("bench", points=points_for_direct[i:i + args.batch_size], wait=True)
        elapsed = time.perf_counter() - started
        assert client.count("bench", exact=True).count == args.points
        close_embedded(state)
        return elapsed

    driver_times, serial_times, direct_times = [], [], []
    for r in range(args.repeats):  # interleaved, so drift on a noisy machine hits all three
        direct_times.append(direct(work / f"direct-{r}"))
        driver_times.append(through_sink(work / f"driver-{r}", serial=False))
        serial_times.append(through_sink(work / f"serial-{r}", serial=True))
    best_driver, best_serial, best_direct = min(driver_times), min(serial_times), min(direct_times)
    result = {
        "points": args.points, "batch_size": args.batch_size, "vector_dim": DIM, "repeats": args.repeats,
        "direct_points_per_s": round(args.points / best_direct),
        "sink_driver_points_per_s": round(args.points / best_driver),
        "sink_serial_points_per_s": round(args.points / best_serial),
        "sink_driver_over_direct": round(best_direct / best_driver, 3),
        "sink_serial_over_direct": round(best_direct / best_serial, 3),
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
