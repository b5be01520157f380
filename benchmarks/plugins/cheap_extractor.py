"""A near-free plug-in extractor for the scale benchmarks (benchmarks/million_files.py): it measures
Prism's per-file overhead, not a model. Kind `python: cheap_extractor:CharCount`, with
benchmarks/plugins on PYTHONPATH (for the driver and, through its environment, for the Ray workers).
"""

from __future__ import annotations

from prism_pipeline.extractors import Extractor, Payload


class CharCount(Extractor):
    """The number of characters of each text item, as a payload."""

    modalities = frozenset({"text"})
    output = Payload()

    def __call__(self, items: list[dict]) -> list[dict]:
        return [{"chars": len(item.get("text") or "")} for item in items]
