"""Loading Hugging Face transformers models for the built-in kinds, always from local files.

The model URI is resolved by prism_pipeline.model_uris (package://, file://, hf:// cache, s3://) to a
directory; everything here reads that directory with `local_files_only`, so a worker never reaches
for the Hub. Image processors use the PIL backend: the torchvision one cannot be installed beside
the worker's torch.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from prism_pipeline import model_uris as models

from .base import Extractor
from .torch_device import Placement


class ModelBacked(Extractor):
    """An extractor whose files come from spec.model, else `default_model`: resolved once, on first
    use (the driver needs only the version and output size; actors load the weights in setup())."""

    default_model: ClassVar[str] = ""

    @cached_property
    def _model_files(self) -> models.ResolvedModel:
        return resolve(self, self.default_model)

    @property
    def version(self) -> str:
        return model_version(self._model_files)


def resolve(extractor: Any, default_uri: str) -> models.ResolvedModel:
    """The extractor's model (spec.model, else the kind's default) as local files."""
    return models.resolve(extractor.spec.model or default_uri, f"extractor {extractor.name!r} model")


def load_model(cls: Any, resolved: models.ResolvedModel, where: Placement, **kwargs: Any) -> Any:
    """`cls.from_pretrained` from the resolved directory, moved to the stage's device and dtype."""
    models.offline()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per actor start would flood the Ray worker logs
    try:
        model = cls.from_pretrained(str(resolved.path), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise models.ModelError(f"{resolved.version}: cannot load it as {cls.__name__} ({err}); check "
                                "that the model URI points at a model of this kind") from err
    return where.to(model)


def load_image_processor(resolved: models.ResolvedModel) -> Any:
    models.offline()
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(resolved.path), local_files_only=True, backend="pil")


def load_tokenizer(resolved: models.ResolvedModel) -> Any:
    models.offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolved.path), local_files_only=True)


def rgb_images(items: list[dict]) -> list[np.ndarray]:
    """The items' images as HxWx3 uint8 arrays (what every image processor here accepts)."""
    images = []
    for item in items:
        image = np.asarray(item["image"])
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{item.get('key')}: expected an RGB image, got an array of shape {image.shape}")
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    return images


def inputs_to(batch: Any, where: Placement) -> dict[str, Any]:
    """Processor output on the model's device; floating tensors in the model's dtype."""
    out = {}
    for name, value in dict(batch).items():
        if hasattr(value, "to"):
            value = value.to(where.device)
            if value.is_floating_point():
                value = value.to(where.dtype)
        out[name] = value
    return out


def model_version(resolved: models.ResolvedModel, *extra: str) -> str:
    """The extractor version: the resolved model's name + revision, plus anything that changes outputs."""
    return "|".join((resolved.version, *extra))
