"""Plug-in extractors used by the pipeline tests (loaded as `python: tests.pipeline.plugins:...`)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from prism_pipeline.extractors import Extractor, Payload


class Poisoned(Extractor):
    """Counts characters; raises on any text containing 'poison', like a model choking on one input."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        for item in items:
            if "poison" in (item["text"] or ""):
                raise ValueError("cannot digest poison")
        return [{"chars": len(item["text"])} for item in items]


class PoisonedUntilCured(Poisoned):
    """Poisoned, until the file named by options.antidote exists: a model fixed between two runs.
    Where the antidote lies does not change its outputs, so it stays out of the fingerprint, and
    incremental runs skip the files it once digested."""

    def __call__(self, items):
        if Path(self.options["antidote"]).exists():
            return [{"chars": len(item["text"])} for item in items]
        return super().__call__(items)

    def fingerprint(self) -> str:
        options = {k: v for k, v in self.options.items() if k != "antidote"}
        return hashlib.sha256(json.dumps([self.spec.kind, self.version, options], sort_keys=True).encode()).hexdigest()


class Hang(Extractor):
    """Never returns: a stuck model call."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        time.sleep(3600)
        return [{} for _ in items]
