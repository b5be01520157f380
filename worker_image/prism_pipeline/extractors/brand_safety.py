"""brand-safety: zero-shot labels for images and frames with a CLIP-style model's two towers.

Each category becomes a prompt (options.template), embedded once per actor by the text tower;
each image is embedded by the image tower and scored against every prompt with the model's own
logit scale and a softmax, as in CLIP's zero-shot classification. Output per item:
    {"labels": [categories scoring >= threshold, best first], "top": best category,
     "scores": {category: score}}
Options: `categories` (list of strings; default DEFAULT_CATEGORIES, keep a neutral one such as
"safe" so an ordinary image has somewhere to go), `template` ("a photo of {}"), `threshold` (0.5),
`embedding` (the name of an image-embedding extractor listed earlier in the job with the SAME model:
its vectors are reused instead of running the image tower again), `dtype`.
Default model: the image-embedding default (hf://openai/clip-vit-base-patch32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Extractor, Payload
from .image_embedding import DEFAULT_MODEL, ImageEmbedding

DEFAULT_CATEGORIES = ("safe", "violence", "weapons", "nudity", "drugs", "alcohol", "tobacco", "gambling",
                      "hate symbols", "disaster or accident")


class BrandSafety(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        categories = self.option("categories", list(DEFAULT_CATEGORIES), list)
        if len(categories) < 2 or not all(isinstance(c, str) and c.strip() for c in categories):
            raise ValueError(f"extractor {self.name!r}: options.categories must list at least two non-empty "
                             f"strings (got {categories!r})")
        if len(set(categories)) != len(categories):
            raise ValueError(f"extractor {self.name!r}: options.categories has duplicates: {categories!r}")
        self._categories = [c.strip() for c in categories]
        self._template = self.option("template", "a photo of {}", str)
        if "{}" not in self._template:
            raise ValueError(f"extractor {self.name!r}: options.template must contain '{{}}' where the "
                             f"category goes (got {self._template!r})")
        self._threshold = float(self.option("threshold", 0.5, (int, float)))
        self._reuse = self.option("embedding", None, (str, type(None)))
        if not 0.0 <= self._threshold <= 1.0:
            raise ValueError(f"extractor {self.name!r}: options.threshold must be in [0, 1] "
                             f"(got {self._threshold})")
        # The dual encoder, normalised so dot products are cosines; same model rules as image-embedding.
        self._encoder = ImageEmbedding(spec.model_copy(update={"options": {**self.options, "normalize": True}}))

    @property
    def version(self) -> str:
        return self._encoder.version

    def setup(self) -> None:
        self._encoder.setup()
        self._text = self._encoder.embed_texts([self._template.format(c) for c in self._categories])
        scale = getattr(self._encoder._model, "logit_scale", None)
        # CLIP learns its temperature; 100 is what a trained CLIP's logit_scale.exp() converges to.
        self._scale = float(scale.exp().item()) if scale is not None else 100.0

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        images = self._reused(items)
        if images is None:
            images = np.stack(self._encoder(items))
        logits = self._scale * images @ self._text.T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return [self._payload(row) for row in probs]

    def _reused(self, items: list[dict]) -> np.ndarray | None:
        """The earlier image-embedding stage's vectors for these items, unit length; None when
        not configured or when an item has none (that stage failed on it): then compute them."""
        if not self._reuse:
            return None
        vectors = [(item.get("outputs") or {}).get(self._reuse) for item in items]
        if any(v is None for v in vectors):
            return None
        vectors = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
        for vector in vectors:
            if vector.shape[0] != self._text.shape[1]:
                raise ValueError(f"extractor {self.name!r}: options.embedding {self._reuse!r} has vectors of "
                                 f"size {vector.shape[0]}, this model's are {self._text.shape[1]}; it must use "
                                 "the same model as this extractor")
        stacked = np.stack(vectors)
        return stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)

    def _payload(self, probs: np.ndarray) -> dict[str, Any]:
        order = np.argsort(-probs, kind="stable")
        scores = {self._categories[i]: round(float(probs[i]), 4) for i in range(len(self._categories))}
        return {
            "labels": [self._categories[i] for i in order if probs[i] >= self._threshold],
            "top": self._categories[int(order[0])],
            "scores": scores,
        }


__all__ = ["DEFAULT_CATEGORIES", "DEFAULT_MODEL", "BrandSafety"]
