"""object-detection: a transformers object detector (RT-DETR, DETR, YOLOS, ...) over images and
video frames, loaded from a model URI with AutoModelForObjectDetection.

Output per item: {"count": n, "boxes": [[x, y, w, h], ...], "labels": [...], "scores": [...]},
best first; boxes in pixels of the decoded image (after preprocess.image.maxSide), the same box
convention as face-detection. Labels are the model's id2label names.
Options: `threshold` (0.5), `maxDetections` (100), `labels` (keep only these names; default all),
`dtype`. Default model: hf://PekingU/rtdetr_r50vd (RT-DETR, ResNet-50; pre-populate the model
cache). Checkpoints whose backbone comes from timm cannot load (timm needs torchvision, which does not
import beside the worker's torch): for DETR use the converted revision,
hf://facebook/detr-resnet-50@no_timm.
"""

from __future__ import annotations

import json
from typing import Any

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Payload
from .torch_device import placement

DEFAULT_MODEL = "hf://PekingU/rtdetr_r50vd"


class ObjectDetection(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
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

    def setup(self) -> None:
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

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
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
