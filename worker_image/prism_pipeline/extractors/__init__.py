"""Extractors: the built-in kinds and the `python: module:Class` plug-in loader."""

from __future__ import annotations

import importlib
from pathlib import Path

from prism_api import ExtractorSpec
from prism_pipeline.model_uris import ModelError

from .base import Extractor, NoTextQuery, Payload, Vector

__all__ = ["BUILTINS", "Extractor", "ExtractorError", "NoTextQuery", "Payload", "Vector", "build", "build_all",
           "extractor_class"]

# kind -> "module:Class", imported only when used (each pulls in its own heavy deps).
BUILTINS = {
    "text-embedding": "prism_pipeline.extractors.text_embedding:TextEmbedding",
    "face-detection": "prism_pipeline.extractors.face_detection:FaceDetection",
    "shot-boundary": "prism_pipeline.extractors.shot_boundary:ShotBoundary",
    "image-embedding": "prism_pipeline.extractors.image_embedding:ImageEmbedding",
    "transcription": "prism_pipeline.extractors.transcription:Transcription",
    "object-detection": "prism_pipeline.extractors.object_detection:ObjectDetection",
    "caption": "prism_pipeline.extractors.caption:Caption",
    "brand-safety": "prism_pipeline.extractors.brand_safety:BrandSafety",
    "ocr": "prism_pipeline.extractors.ocr:OCR",
}


class ExtractorError(ValueError):
    """An extractor that cannot be built; the message names spec.extractors[i]."""


def _load_class(path: str, where: str) -> type:
    module_name, _, class_name = (part.strip() for part in path.partition(":"))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ExtractorError(f"{where}.kind: cannot import plug-in module {module_name!r}: no module named "
                                 f"{err.name!r}; install it or put its folder on PYTHONPATH (in the worker image "
                                 "on Kubernetes)") from err
        raise ExtractorError(f"{where}.kind: plug-in module {module_name!r} imports {err.name!r}, which is not "
                             "installed; install it (in the worker image on Kubernetes)") from err
    except SyntaxError as err:
        raise ExtractorError(f"{where}.kind: plug-in module {module_name!r} does not compile: SyntaxError: "
                             f"{err.msg} ({Path(err.filename or '?').name}, line {err.lineno}); fix the module") from err
    except Exception as err:  # noqa: BLE001 - whatever the plug-in's own import code raises
        raise ExtractorError(f"{where}.kind: plug-in module {module_name!r} failed while importing: "
                             f"{type(err).__name__}: {err}; fix the module") from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ExtractorError(f"{where}.kind: module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise ExtractorError(f"{where}.kind: {module_name}:{class_name} must be a subclass of "
                             "prism_pipeline.extractors.Extractor")
    return cls


def extractor_class(spec: ExtractorSpec, where: str = "spec.extractors[?]") -> type[Extractor]:
    """The class `spec.kind` names, not constructed: enough to read class attributes (per_file)
    without resolving a model."""
    if spec.plugin_path:
        return _load_class(spec.plugin_path, where)
    if spec.kind in BUILTINS:
        return _load_class(BUILTINS[spec.kind], where)
    raise ExtractorError(f"{where}.kind: {spec.kind!r} is not available in this version of the worker "
                         f"(available: {', '.join(BUILTINS)}, or a 'python: module:Class' plug-in)")


def build(spec: ExtractorSpec, where: str = "spec.extractors[?]") -> Extractor:
    """An extractor instance (no model loaded yet) with its declarations checked."""
    cls = extractor_class(spec, where)
    try:
        ex = cls(spec)
        # output and version resolve the model on the driver: a missing one fails here, named.
        output, modalities, _ = ex.output, ex.modalities, ex.version
    except (ValueError, TypeError, ModelError) as err:
        raise ExtractorError(f"{where}: {err}") from err
    if not isinstance(output, Vector | Payload):
        raise ExtractorError(f"{where}: {cls.__name__}.output must be Vector(size) or Payload()")
    if isinstance(output, Vector) and output.size < 1:
        raise ExtractorError(f"{where}: {cls.__name__}.output vector size must be >= 1")
    if not modalities or not set(modalities) <= {"image", "audio", "text"}:
        raise ExtractorError(f"{where}: {cls.__name__}.modalities must be a non-empty subset of "
                             f"image, audio, text (got {sorted(modalities)})")
    if spec.serve is not None and (not isinstance(output, Vector) or cls.per_file):
        why = "runs inside the read tasks (per-file)" if cls.per_file else "outputs a payload, not a vector"
        raise ExtractorError(f"{where}.serve: only embedding extractors can call a Serve deployment, and "
                             f"{spec.kind!r} {why}; remove serve")
    return ex


def build_all(specs: list[ExtractorSpec]) -> list[Extractor]:
    return [build(s, f"spec.extractors[{i}]") for i, s in enumerate(specs)]
