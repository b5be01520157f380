"""caption: BLIP and ViT+GPT-2 captioners from file:// URIs; one text per image."""

from __future__ import annotations

import json

import pytest

from prism_pipeline.extractors.caption import Caption
from prism_pipeline.model_uris import ModelError

from .conftest import image_item, spec


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["vit_gpt2_uri", "blip_uri"])
def test_one_caption_per_image(fixture, request, images):
    uri = request.getfixturevalue(fixture)
    ex = Caption(spec("caption", uri, options={"maxNewTokens": 5}))
    assert ex.family == ("blip" if fixture == "blip_uri" else "vision-encoder-decoder")
    assert ex.version.startswith(uri)
    ex.setup()
    payloads = ex([image_item(f"i{n}", im) for n, im in enumerate(images)])
    assert len(payloads) == 2
    for payload in payloads:
        assert set(payload) == {"text"} and isinstance(payload["text"], str)
        json.dumps(payload)
    assert ex([image_item("i0", images[0])]) == payloads[:1]  # greedy decoding is deterministic


@pytest.mark.slow
def test_blip_prompt(blip_uri, images):
    ex = Caption(spec("caption", blip_uri, options={"maxNewTokens": 4, "prompt": "a photo of"}))
    ex.setup()
    [payload] = ex([image_item("i", images[0])])
    assert isinstance(payload["text"], str)


@pytest.mark.slow
def test_prompt_needs_blip(vit_gpt2_uri):
    with pytest.raises(ValueError, match="options.prompt works with BLIP models only"):
        Caption(spec("caption", vit_gpt2_uri, options={"prompt": "a photo of"})).setup()


def test_not_a_captioning_model(clip_uri):
    with pytest.raises(ModelError, match="is a clip model; caption takes a BLIP or a VisionEncoderDecoder"):
        Caption(spec("caption", clip_uri)).family  # noqa: B018


@pytest.mark.parametrize(("options", "message"), [
    ({"maxNewTokens": 0}, "maxNewTokens must be in 1..512"),
    ({"numBeams": 0}, "numBeams must be in 1..16"),
    ({"prompt": 3}, "options.prompt must be str"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        Caption(spec("caption", "file:///x", options=options))
