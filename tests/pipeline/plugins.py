"""Plug-in extractors used by the pipeline tests (loaded as `python: tests.pipeline.plugins:...`)."""

from __future__ import annotations

import time

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


class Hang(Extractor):
    """Never returns: a stuck model call."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items):
        time.sleep(3600)
        return [{} for _ in items]
