"""caption: a vision-language model writes one sentence per image or video frame.

Two transformers families load from a model URI: BLIP (BlipForConditionalGeneration, e.g. the
default hf://Salesforce/blip-image-captioning-base) and any VisionEncoderDecoderModel (ViT + GPT-2
style, e.g. nlpconnect/vit-gpt2-image-captioning). Output per item: {"text": "a dog on a beach"}.
Options: `maxNewTokens` (30), `numBeams` (1: greedy, deterministic and cheapest), `prompt` (BLIP
only: a prefix the caption continues, e.g. "a photography of"), `dtype`.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Payload
from .torch_device import placement

DEFAULT_MODEL = "hf://Salesforce/blip-image-captioning-base"


class Caption(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        self._max_new_tokens = self.option("maxNewTokens", 30, int)
        self._beams = self.option("numBeams", 1, int)
        self._prompt = self.option("prompt", None, (str, type(None)))
        if not 1 <= self._max_new_tokens <= 512:
            raise ValueError(f"extractor {self.name!r}: options.maxNewTokens must be in 1..512 "
                             f"(got {self._max_new_tokens})")
        if not 1 <= self._beams <= 16:
            raise ValueError(f"extractor {self.name!r}: options.numBeams must be in 1..16 (got {self._beams})")

    @cached_property
    def family(self) -> str:
        """"blip" or "vision-encoder-decoder", from config.json."""
        config_file = self._model_files.path / "config.json"
        model_type = json.loads(config_file.read_text()).get("model_type") if config_file.exists() else None
        if model_type not in ("blip", "vision-encoder-decoder"):
            raise models.ModelError(f"extractor {self.name!r}: {self._model_files.version} is a "
                                    f"{model_type or 'non-transformers'} model; caption takes a BLIP or a "
                                    "VisionEncoderDecoder captioning model")
        if self._prompt and model_type != "blip":
            raise ValueError(f"extractor {self.name!r}: options.prompt works with BLIP models only")
        return model_type

    def setup(self) -> None:
        from transformers import BlipForConditionalGeneration, VisionEncoderDecoderModel

        cls = BlipForConditionalGeneration if self.family == "blip" else VisionEncoderDecoderModel
        self._where = placement(self)
        self._model = hf_models.load_model(cls, self._model_files, self._where)
        self._images = hf_models.load_image_processor(self._model_files)
        self._tokenizer = hf_models.load_tokenizer(self._model_files)

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        import torch

        images = hf_models.rgb_images(items)
        inputs = hf_models.inputs_to(self._images(images=images, return_tensors="pt"), self._where)
        if self._prompt:
            prompt = self._tokenizer([self._prompt] * len(images), return_tensors="pt")
            inputs.update(hf_models.inputs_to({k: prompt[k] for k in ("input_ids", "attention_mask")},
                                              self._where))
        kwargs: dict[str, Any] = {"max_new_tokens": self._max_new_tokens, "num_beams": self._beams}
        if self.family == "vision-encoder-decoder":
            kwargs["pixel_values"] = inputs.pop("pixel_values")
            inputs = {}
        with torch.inference_mode():
            tokens = self._model.generate(**inputs, **kwargs)
        texts = self._tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [{"text": " ".join(t.split())} for t in texts]
