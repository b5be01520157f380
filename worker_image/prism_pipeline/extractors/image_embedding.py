"""image-embedding: a CLIP-style dual encoder. Images and video frames go through the image tower;
the text tower embeds queries into the same space, so `prism search "a red car"` finds frames.

Default model: hf://openai/clip-vit-base-patch32 (512 dimensions; pre-populate the model cache).
Loaded with transformers' AutoModel; written and tested for CLIP checkpoints (SigLIP-style models
load too, but expect max-length padding of queries, which this does not do).
Options: `normalize` (true: unit vectors, so Cosine and Dot agree), `dtype` (see torch_device).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import numpy as np

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Vector
from .torch_device import placement

DEFAULT_MODEL = "hf://openai/clip-vit-base-patch32"


class ImageEmbedding(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"image"})

    def __init__(self, spec):
        super().__init__(spec)
        self._normalize = self.option("normalize", True, bool)

    @cached_property
    def output(self) -> Vector:
        return Vector(size=embedding_size(self._model_files))

    def setup(self) -> None:
        from transformers import AutoModel

        self._where = placement(self)
        self._model = hf_models.load_model(AutoModel, self._model_files, self._where)
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(self._model, method):
                raise models.ModelError(f"{self._model_files.version}: {type(self._model).__name__} is not a "
                                        f"dual (image + text) encoder: it has no {method}()")
        self._processor = hf_models.load_image_processor(self._model_files)
        self._tokenizer = hf_models.load_tokenizer(self._model_files)

    def __call__(self, items: list[dict]) -> list[np.ndarray]:
        import torch

        batch = self._processor(images=hf_models.rgb_images(items), return_tensors="pt")
        with torch.inference_mode():
            features = self._model.get_image_features(**hf_models.inputs_to(batch, self._where))
        return list(self._finish(features))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts through the text tower, into the images' space: (len(texts), size) float32."""
        import torch

        batch = self._tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            features = self._model.get_text_features(**hf_models.inputs_to(batch, self._where))
        return self._finish(features)

    def embed_query(self, text: str) -> np.ndarray:
        """The query side of `prism search` over this extractor's vectors."""
        return self.embed_texts([text])[0]

    def _finish(self, features: Any) -> np.ndarray:
        # transformers 5 returns a model output whose pooler_output is the projected embedding.
        tensor = features if hasattr(features, "float") else features.pooler_output
        vectors = tensor.float().cpu().numpy().astype(np.float32)
        if self._normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


def embedding_size(resolved: models.ResolvedModel) -> int:
    """The joint embedding size from config.json, without loading weights."""
    config_file = resolved.path / "config.json"
    if not config_file.exists():
        raise models.ModelError(f"{resolved.version}: no config.json; not a transformers model folder")
    config = json.loads(config_file.read_text())
    size = config.get("projection_dim") or (config.get("text_config") or {}).get("projection_size") \
        or (config.get("text_config") or {}).get("hidden_size")
    if not size:
        raise models.ModelError(f"{resolved.version}: cannot tell the embedding size from config.json "
                                "(no projection_dim or text_config.hidden_size)")
    return int(size)
