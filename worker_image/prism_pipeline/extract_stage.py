"""One extractor as a Ray Data actor stage: the model loads once per actor, then every batch
passes through. Items the extractor does not accept (other modalities, file markers) pass through
untouched; the rest get their output under outputs[<name>].

If the extractor raises on a batch, the batch is retried item by item, so one bad item costs only
itself: it gets an error entry (the driver records its file in the ledger) and its batch-mates
keep their outputs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from prism_api import ExtractorSpec
from prism_api.progress_report import Counts
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, Vector, build


class ExtractorStage:
    def __init__(self, spec: dict, progress: Any = None):
        self.extractor: Extractor = build(ExtractorSpec.model_validate(spec))
        self.extractor.setup()
        self.name = self.extractor.name
        self.vector = self.extractor.output if isinstance(self.extractor.output, Vector) else None
        self.progress = progress
        self.gpu = spec.get("resources", {}).get("gpu", 0) > 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started_wall, started_cpu = time.monotonic(), time.process_time()
        rows = R.from_batch(batch)
        chosen = [r for r in rows if r["status"] == R.ITEM and self.extractor.accepts(r)]
        failed = self._apply(chosen) if chosen else 0
        if self.progress is not None:
            counts = Counts(items={self.name: len(chosen) - failed}, cpu_seconds=time.process_time() - started_cpu,
                            items_failed={self.name: failed} if failed else {},
                            gpu_seconds=time.monotonic() - started_wall if self.gpu else 0.0)
            self.progress.add.remote(counts)  # fire-and-forget, once per batch
        return R.to_batch(rows) if rows else R.empty_batch()

    def _apply(self, chosen: list[dict[str, Any]]) -> int:
        """Set outputs on `chosen`; return how many items failed."""
        try:
            outputs = self._call(chosen)
        except Exception as err:
            if len(chosen) == 1:
                row = chosen[0]
                row["errors"].append({"stage": self.name, "error": f"{row['key']}: {type(err).__name__}: {err}"})
                return 1
            # Isolate the bad item(s): batch-mates keep their results.
            return sum(self._apply([row]) for row in chosen)
        for row, value in zip(chosen, outputs, strict=True):
            row["outputs"][self.name] = value
        return 0

    def _call(self, items: list[dict[str, Any]]) -> list[Any]:
        outputs = list(self.extractor(items))
        if len(outputs) != len(items):
            raise ValueError(f"extractor {self.name!r} returned {len(outputs)} outputs for {len(items)} items")
        if self.vector is not None:
            outputs = [self._check_vector(v) for v in outputs]
        return outputs

    def _check_vector(self, value: Any) -> np.ndarray:
        vec = np.asarray(value, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.vector.size:
            raise ValueError(f"extractor {self.name!r} returned a vector of size {vec.shape[0]}, "
                             f"declared {self.vector.size}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"extractor {self.name!r} returned a vector with NaN/inf")
        return vec
