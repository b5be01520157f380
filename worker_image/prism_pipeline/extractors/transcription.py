"""transcription: speech to text for audio files and video soundtracks, with timestamps.

Two backends, picked by the model:
- pocketsphinx (the default, `package://pocketsphinx`, or any directory laid out like its model
  folder): offline CMU Sphinx with the en-us model shipped inside the wheel; CPU only.
- a whisper-family model (a transformers folder with config.json, e.g.
  hf://openai/whisper-small): WhisperForConditionalGeneration, GPU and bf16/fp16 when the stage
  asks; segments from whisper's timestamp tokens when the model has them.

Output per audio item (times in seconds from the start of the file, not of the chunk):
    {"text": "...", "language": "en", "segments": [{"start": 1.2, "end": 3.4, "text": "..."}]}
The transcript also becomes the audio item's `text`, so a text-embedding stage listed after this
one embeds it (see text_embedding.accepts).
Options: `language` (whisper: a language code or null to detect, default "en"; pocketsphinx: the
model sub-folder, default "en-us"), `timestamps` (whisper, true), `maxNewTokens` (whisper, 440),
`minSilence` (pocketsphinx: seconds of silence that split segments, 0.3), `dtype`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Payload
from .torch_device import placement

DEFAULT_MODEL = "package://pocketsphinx"
SAMPLE_RATE = 16000            # both backends' models are trained on 16 kHz audio
WHISPER_WINDOW_S = 30.0        # whisper's encoder sees exactly 30 s; longer chunks are windowed
# Below -80 dBFS RMS a chunk is digital silence; both backends hallucinate words on it (pocketsphinx
# hears "dog" in all-zero samples), so it gets an empty transcript without a model call.
SILENT_RMS = 1e-4


class Transcription(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"audio"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        self._timestamps = self.option("timestamps", True, bool)
        self._max_new_tokens = self.option("maxNewTokens", 440, int)
        self._min_silence = float(self.option("minSilence", 0.3, (int, float)))
        if not 1 <= self._max_new_tokens <= 448:
            raise ValueError(f"extractor {self.name!r}: options.maxNewTokens must be in 1..448 "
                             f"(whisper's decoder length), got {self._max_new_tokens}")

    @cached_property
    def backend(self) -> str:
        """"whisper" for a transformers folder, else "pocketsphinx"."""
        path = self._model_files.path
        return "whisper" if (path / "config.json").exists() else "pocketsphinx"

    @cached_property
    def _language(self) -> str | None:
        default = "en" if self.backend == "whisper" else "en-us"
        return self.option("language", default, (str, type(None)))

    @property
    def version(self) -> str:
        extra = (f"language={self._language}",)
        return hf_models.model_version(self._model_files, *extra)

    def setup(self) -> None:
        if self.backend == "whisper":
            self._setup_whisper()
        else:
            self._setup_pocketsphinx()

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        audio = [_mono_16k(item) for item in items]
        if self.backend == "whisper":
            payloads = self._whisper(audio, [float(item.get("timestamp") or 0.0) for item in items])
        else:
            payloads = [self._pocketsphinx(a, float(item.get("timestamp") or 0.0)) for a, item in zip(
                audio, items, strict=True)]
        for item, payload in zip(items, payloads, strict=True):
            item["text"] = payload["text"]
        return payloads

    # pocketsphinx -------------------------------------------------------------------------------

    def _setup_pocketsphinx(self) -> None:
        if self.spec.resources.gpu > 0:
            raise ValueError(f"extractor {self.name!r}: pocketsphinx runs on CPU only; set resources.gpu: 0 "
                             "or use a whisper model for GPU transcription")
        if not self._language:
            raise ValueError(f"extractor {self.name!r}: pocketsphinx needs options.language, the model "
                             "sub-folder (e.g. en-us); it cannot detect the language")
        from pocketsphinx import Decoder

        root = self._model_files.path
        folder = root / self._language if (root / self._language).is_dir() else root
        hmm, lm, dic = folder / folder.name, folder / f"{folder.name}.lm.bin", folder / f"cmudict-{folder.name}.dict"
        missing = [p.name for p in (hmm, lm, dic) if not p.exists()]
        if missing:
            raise models.ModelError(f"extractor {self.name!r}: {folder} is not a pocketsphinx model folder "
                                    f"(missing {', '.join(missing)}); check model and options.language")
        self._decoder = Decoder(hmm=str(hmm), lm=str(lm), dict=str(dic), samprate=SAMPLE_RATE,
                                loglevel="FATAL")
        self._frame_rate = float(self._decoder.config["frate"])

    def _pocketsphinx(self, audio: np.ndarray, offset: float) -> dict[str, Any]:
        if _silent(audio):
            return {"text": "", "language": self._language, "segments": []}
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        words = []
        if self._decoder.hyp() is not None:
            for seg in self._decoder.seg():
                words.append((seg.word, seg.start_frame / self._frame_rate, (seg.end_frame + 1) / self._frame_rate))
        segments = _phrases(words, self._min_silence, offset)
        return {"text": " ".join(s["text"] for s in segments), "language": self._language,
                "segments": segments}

    # whisper ------------------------------------------------------------------------------------

    def _setup_whisper(self) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self._where = placement(self)
        self._model = hf_models.load_model(WhisperForConditionalGeneration, self._model_files, self._where)
        self._processor = WhisperProcessor.from_pretrained(str(self._model_files.path), local_files_only=True)
        generation = self._model.generation_config
        # Timestamp tokens exist only in checkpoints trained with them (every openai/whisper-*).
        self._can_timestamp = self._timestamps and getattr(generation, "no_timestamps_token_id", None) is not None
        self._multilingual = bool(getattr(generation, "is_multilingual", False))

    def _whisper(self, audio: list[np.ndarray], offsets: list[float]) -> list[dict[str, Any]]:
        import torch

        window = int(WHISPER_WINDOW_S * SAMPLE_RATE)
        pieces, owners = [], []  # one 30 s window per piece; owners[i] = (item, start s, length s)
        for index, samples in enumerate(audio):
            if _silent(samples):
                continue
            for start in range(0, len(samples), window):
                pieces.append(samples[start:start + window])
                owners.append((index, offsets[index] + start / SAMPLE_RATE, len(pieces[-1]) / SAMPLE_RATE))
        segments: list[list[dict[str, Any]]] = [[] for _ in audio]
        if not pieces:
            return self._whisper_payloads(segments)
        features = self._processor.feature_extractor(pieces, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                     return_attention_mask=True)
        kwargs: dict[str, Any] = {"max_new_tokens": self._max_new_tokens}
        if self._multilingual:
            kwargs.update(task="transcribe", language=self._language)
        if self._can_timestamp:
            kwargs["return_timestamps"] = True
        inputs = hf_models.inputs_to(features, self._where)
        with torch.inference_mode():
            tokens = self._model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"],
                                          **kwargs)
        tokenizer = self._processor.tokenizer
        for row, (index, start, length) in zip(tokens, owners, strict=True):
            segments[index].extend(_whisper_segments(tokenizer, row, start, length, self._can_timestamp))
        return self._whisper_payloads(segments)

    def _whisper_payloads(self, segments: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{"text": " ".join(s["text"] for s in segs).strip(), "language": self._language,
                 "segments": segs} for segs in segments]


def _silent(audio: np.ndarray) -> bool:
    return not len(audio) or float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENT_RMS


def _mono_16k(item: dict) -> np.ndarray:
    """The item's audio as float32 mono at 16 kHz (linear resampling; preprocess normally
    delivers 16 kHz already)."""
    audio = np.asarray(item["audio"], dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0 if audio.shape[0] < audio.shape[1] else 1)
    rate = int(item.get("sample_rate") or SAMPLE_RATE)
    if rate != SAMPLE_RATE and len(audio):
        n = max(1, round(len(audio) * SAMPLE_RATE / rate))
        audio = np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(np.float32)
    return audio


def _phrases(words: list[tuple[str, float, float]], min_silence: float, offset: float) -> list[dict[str, Any]]:
    """pocketsphinx words -> phrases split at silences of at least `min_silence` seconds."""
    segments: list[dict[str, Any]] = []
    current: list[tuple[str, float, float]] = []

    def flush() -> None:
        if current:
            segments.append({"start": round(offset + current[0][1], 2), "end": round(offset + current[-1][2], 2),
                             "text": " ".join(w for w, _, _ in current)})
            current.clear()

    for word, start, end in words:
        if word in ("<s>", "</s>", "<sil>") or word.startswith("[") or word.startswith("+"):
            if word == "<sil>" and end - start >= min_silence:
                flush()
            continue
        current.append((word.split("(", 1)[0], start, end))  # "the(2)": an alternate pronunciation
    flush()
    return segments


def _whisper_segments(tokenizer: Any, tokens: Any, start: float, length: float,
                      timestamps: bool) -> list[dict[str, Any]]:
    """Segments of one 30 s window starting at `start` s, holding `length` s of real audio. Times
    are clamped to the real audio: past it is padding, where a segment can only be a hallucination."""
    ids = tokens.tolist()
    if timestamps:
        decoded = tokenizer.decode(ids, skip_special_tokens=True, output_offsets=True)
        offsets = (decoded.get("offsets") or []) if isinstance(decoded, dict) else []
        segs = []
        for o in offsets:
            begin, end = o["timestamp"]
            end = length if end is None else min(end, length)
            if o["text"].strip() and begin < length:
                segs.append({"start": round(start + begin, 2), "end": round(start + max(end, begin), 2),
                             "text": o["text"].strip()})
        if segs:
            return segs
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return [{"start": round(start, 2), "end": round(start + length, 2), "text": text}] if text else []
