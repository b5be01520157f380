"""transcription: pocketsphinx (shipped model) recognises synthesised speech; whisper loads from a URI."""

from __future__ import annotations

import numpy as np
import pytest

from prism_pipeline.extractors.transcription import Transcription
from prism_pipeline.model_uris import ModelError

from .conftest import spec, speech

pytestmark = pytest.mark.slow


def audio_item(key: str, audio: np.ndarray, rate: int, start: float = 0.0) -> dict:
    return {"key": key, "uri": key, "modality": "audio", "audio": audio, "sample_rate": rate,
            "timestamp": start, "t_end": start + len(audio) / rate, "text": None, "outputs": {}}


def test_pocketsphinx_recognises_synthesised_speech(tmp_path):
    hello, rate = speech("hello world", tmp_path / "a.wav")
    count, _ = speech("one two three four five", tmp_path / "b.wav")
    second = np.zeros(rate, np.float32)
    ex = Transcription(spec("transcription"))
    assert ex.backend == "pocketsphinx"
    assert ex.version.startswith("package://pocketsphinx==")
    ex.setup()
    item = audio_item("a.wav#t=60-90", np.concatenate([second, hello, second, count, second]), rate, start=60.0)
    [payload] = ex([item])
    said = "hello world one two three four five".split()
    heard = payload["text"].split()
    # espeak's robot voice is hard for a 2015 acoustic model: most words, not all, must come through.
    assert len(set(said) & set(heard)) >= 5, payload
    assert payload["language"] == "en-us"
    assert item["text"] == payload["text"]  # what a later text-embedding stage embeds
    segments = payload["segments"]
    assert " ".join(s["text"] for s in segments) == payload["text"]
    # the second of silence between the phrases splits them; times are seconds of the file
    assert len(segments) == 2, segments
    assert 60.5 <= segments[0]["start"] < segments[0]["end"] < segments[1]["start"] < segments[1]["end"]
    assert segments[1]["end"] <= 60.0 + len(item["audio"]) / rate


def test_pocketsphinx_on_silence_gives_an_empty_transcript():
    ex = Transcription(spec("transcription"))
    ex.setup()
    [payload] = ex([audio_item("quiet", np.zeros(16000, np.float32), 16000)])
    assert payload["text"] == "" and payload["segments"] == []


def test_whisper_model_from_a_file_uri(whisper_uri):
    ex = Transcription(spec("transcription", whisper_uri, options={"maxNewTokens": 4}))
    assert ex.backend == "whisper"
    assert ex.version.startswith(whisper_uri) and ex.version.endswith("language=en")
    ex.setup()
    rng = np.random.default_rng(0)
    short = audio_item("a#t=30-33", rng.normal(0, 0.1, 3 * 16000).astype(np.float32), 16000, start=30.0)
    long = audio_item("b#t=0-40", rng.normal(0, 0.1, 40 * 8000).astype(np.float32), 8000)  # 2 windows
    silent = audio_item("c#t=0-5", np.zeros(5 * 16000, np.float32), 16000)
    first, second, third = ex([short, long, silent])
    assert third == {"text": "", "language": "en", "segments": []}
    for payload in (first, second):
        assert set(payload) == {"text", "language", "segments"}
        assert payload["text"] == " ".join(s["text"] for s in payload["segments"]).strip()
    assert [(s["start"], s["end"]) for s in first["segments"]] == [(30.0, 33.0)]
    assert [(s["start"], s["end"]) for s in second["segments"]] == [(0.0, 30.0), (30.0, 40.0)]


def test_whisper_timestamp_segments(whisper_timestamps_uri):
    ex = Transcription(spec("transcription", whisper_timestamps_uri, options={"maxNewTokens": 40}))
    ex.setup()
    assert ex._can_timestamp
    rng = np.random.default_rng(0)
    [payload] = ex([audio_item("a#t=30-35", rng.normal(0, 0.1, 5 * 16000).astype(np.float32), 16000, start=30.0)])
    segments = payload["segments"]
    assert segments, payload  # the random model emits timestamp pairs with text between them
    for seg in segments:  # inside the chunk's 5 s of audio, never in whisper's padding
        assert 30.0 <= seg["start"] <= seg["end"] <= 35.0
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert payload["text"] == " ".join(s["text"] for s in segments)
    no_timestamps = Transcription(spec("transcription", whisper_timestamps_uri,
                                       options={"maxNewTokens": 40, "timestamps": False}))
    no_timestamps.setup()
    [plain] = no_timestamps([audio_item("a#t=30-35", rng.normal(0, 0.1, 5 * 16000).astype(np.float32), 16000,
                                        start=30.0)])
    assert [(s["start"], s["end"]) for s in plain["segments"]] in ([], [(30.0, 35.0)])


def test_not_a_pocketsphinx_folder(tmp_path):
    ex = Transcription(spec("transcription", f"file://{tmp_path}"))
    with pytest.raises(ModelError, match="not a pocketsphinx model folder"):
        ex.setup()


def test_pocketsphinx_needs_a_language():
    with pytest.raises(ValueError, match="pocketsphinx needs options.language"):
        Transcription(spec("transcription", options={"language": None})).setup()


def test_max_new_tokens_is_bounded():
    with pytest.raises(ValueError, match="options.maxNewTokens must be in 1..448"):
        Transcription(spec("transcription", options={"maxNewTokens": 1000}))
