import numpy as np
import pytest

from prism_pipeline.preprocess import DecodeError, decode_file

from .conftest import preprocess, wav_bytes


def test_stereo_44k_is_resampled_to_mono_at_sample_rate_and_chunked():
    pre = preprocess(audio={"sampleRate": 16000, "chunkSeconds": 2})
    items = decode_file("/a/tone.wav", wav_bytes(5.0, rate=44100, channels=2), pre)
    assert [(i["timestamp"], i["t_end"]) for i in items] == [(0, 2), (2, 4), (4, 5)]
    assert [i["key"] for i in items] == ["/a/tone.wav#t=0-2", "/a/tone.wav#t=2-4", "/a/tone.wav#t=4-5"]
    assert [len(i["audio"]) for i in items] == [32000, 32000, 16000]
    for item in items:
        assert item["audio"].dtype == np.float32 and item["audio"].ndim == 1
        assert item["sample_rate"] == 16000
        assert item["modality"] == item["file_modality"] == "audio"
    # Still a 440 Hz tone after resampling: count zero crossings over the first chunk.
    first = items[0]["audio"]
    crossings = np.count_nonzero(np.diff(np.signbit(first)))
    assert crossings / 2 / 2.0 == pytest.approx(440, rel=0.02)
    assert 0.3 < np.abs(first).max() <= 1.0  # the stereo downmix may scale it


def test_one_chunk_when_the_file_is_shorter_than_chunk_seconds():
    [item] = decode_file("/a/short.wav", wav_bytes(1.5, rate=8000, channels=1),
                         preprocess(audio={"sampleRate": 16000, "chunkSeconds": 30}))
    assert item["key"] == "/a/short.wav#t=0-1.5" and len(item["audio"]) == 24000


def test_sample_speech(media):
    items = decode_file("w.wav", (media / "audio" / "weather_report.wav").read_bytes(), preprocess())
    assert len(items) == 1 and 17.0 < items[0]["t_end"] < 19.0  # the 18 s bulletin, one 30 s chunk


def test_truncated_wav_keeps_what_is_there_or_raises():
    data = wav_bytes(2.0, rate=16000, channels=1)
    items = decode_file("/a/cut.wav", data[: len(data) // 2], preprocess(audio={"sampleRate": 16000}))
    assert 0.9 < items[-1]["t_end"] <= 1.05


def test_garbage_audio_raises():
    with pytest.raises(DecodeError, match="junk.mp3"):
        decode_file("/a/junk.mp3", bytes(range(256)) * 8, preprocess())
