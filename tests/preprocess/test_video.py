import numpy as np
import pytest

from prism_pipeline.preprocess import DecodeError, decode_file
from prism_pipeline.preprocess.video import sample_times

from .conftest import preprocess, video_bytes


def frames(items):
    return [i for i in items if i["modality"] == "image"]


def grey_index(img: np.ndarray) -> int:
    """Which source frame a synthetic frame is: its grey level is 5 * n (n < 52)."""
    return round(float(img.mean()) / 5)


@pytest.fixture(scope="module")
def five_seconds() -> bytes:
    return video_bytes(5.0, fps=10, gop=10)


@pytest.mark.parametrize("fps, max_frames, expected", [(1, 600, 5), (2, 600, 10), (0.5, 600, 3),
                                                       (1, 3, 3), (10, 600, 50),
                                                       (30, 600, 50)])  # above the video rate: each frame once
def test_frame_count_is_duration_times_fps_capped_by_max_frames(five_seconds, fps, max_frames, expected):
    pre = preprocess(video={"framesPerSecond": fps, "maxFrames": max_frames, "audio": False})
    assert len(frames(decode_file("/v/clip.mp4", five_seconds, pre))) == expected


def test_frames_are_the_source_frames_at_the_sampled_times(five_seconds):
    pre = preprocess(video={"framesPerSecond": 2, "audio": False})
    got = frames(decode_file("/v/clip.mp4", five_seconds, pre))
    assert [f["frame"] for f in got] == list(range(0, 50, 5))
    assert [f["timestamp"] for f in got] == pytest.approx([n / 2 for n in range(10)])
    assert [grey_index(f["image"]) for f in got] == [f["frame"] for f in got]  # the right pixels
    assert [f["key"] for f in got] == [f"/v/clip.mp4#frame={n}" for n in range(0, 50, 5)]


def test_beyond_max_frames_they_are_spread_over_the_whole_video(five_seconds):
    pre = preprocess(video={"framesPerSecond": 10, "maxFrames": 4, "audio": False})
    got = frames(decode_file("/v/clip.mp4", five_seconds, pre))
    assert [f["frame"] for f in got] == [0, 12, 25, 37]
    assert [grey_index(f["image"]) for f in got] == [0, 12, 25, 37]


def test_sample_times():
    assert sample_times(4.0, 1, 600) == [0, 1, 2, 3]
    assert sample_times(4.5, 1, 600) == [0, 1, 2, 3, 4]
    assert sample_times(10.0, 1, 4) == [0, 2.5, 5.0, 7.5]
    assert sample_times(0.0, 1, 10) == [0.0]


def test_frames_are_scaled_to_max_side():
    data = video_bytes(1.0, fps=5, size=(320, 240), audio_rate=None)
    got = frames(decode_file("/v/c.mp4", data, preprocess(image={"maxSide": 100})))
    assert {f["image"].shape for f in got} == {(75, 100, 3)}


def test_audio_track_becomes_audio_items(five_seconds):
    pre = preprocess(video={"audio": True}, audio={"sampleRate": 16000, "chunkSeconds": 2})
    items = decode_file("/v/clip.mp4", five_seconds, pre)
    audio = [i for i in items if i["modality"] == "audio"]
    assert [(i["timestamp"], i["t_end"]) for i in audio][:2] == [(0, 2), (2, 4)]
    assert 4.9 <= audio[-1]["t_end"] <= 5.1
    assert all(i["file_modality"] == "video" and i["sample_rate"] == 16000 for i in audio)
    assert audio[0]["key"] == "/v/clip.mp4#t=0-2" and audio[0]["audio"].shape == (32000,)
    off = decode_file("/v/clip.mp4", five_seconds, preprocess(video={"audio": False}))
    assert [i["modality"] for i in off] == ["image"] * 5


def test_sample_video_has_a_scene_cut_and_speech(media):
    items = decode_file("v.mp4", (media / "video" / "astronaut_then_coffee.mp4").read_bytes(), preprocess())
    got = frames(items)
    assert [f["timestamp"] for f in got] == [0, 1, 2, 3, 4, 5]
    means = [f["image"].reshape(-1, 3).mean(0) for f in got]
    steps = [np.abs(b - a).sum() for a, b in zip(means, means[1:], strict=False)]
    assert max(range(len(steps)), key=steps.__getitem__) == 2  # the cut at 3 s: between frames 2 and 3
    assert steps[2] > 3 * max(steps[:2] + steps[3:])  # far more change than the slow zoom within a scene
    [speech] = [i for i in items if i["modality"] == "audio"]
    assert 5.5 < speech["t_end"] < 6.5 and np.abs(speech["audio"]).max() > 0.05


@pytest.mark.parametrize("container, ext, codec", [("matroska", "mkv", "libx264"), ("mov", "mov", "libx264"),
                                                   ("mpegts", "mpg", "mpeg2video")])
def test_other_containers_land_on_the_right_frames(container, ext, codec):
    # Matroska and QuickTime index differently from MP4; MPEG-TS seeks only approximately (from
    # byte offsets), which the decoder must notice and recover from.
    data = video_bytes(3.0, fps=10, audio_rate=None, container=container, gop=5, codec=codec)
    got = frames(decode_file(f"/v/c.{ext}", data, preprocess(video={"framesPerSecond": 1})))
    assert [f["frame"] for f in got] == [0, 10, 20]
    assert [grey_index(f["image"]) for f in got] == [0, 10, 20]


def test_b_frames_are_reordered_before_matching():
    data = video_bytes(4.0, fps=10, audio_rate=None, gop=12, preset="medium")
    got = frames(decode_file("/v/b.mp4", data, preprocess(video={"framesPerSecond": 3})))
    # The frame on screen at k/3 s: floor(10 * k / 3).
    assert [f["frame"] for f in got] == [0, 3, 6, 10, 13, 16, 20, 23, 26, 30, 33, 36]
    assert [grey_index(f["image"]) for f in got] == [f["frame"] for f in got]


def test_truncated_faststart_mp4_keeps_the_frames_before_the_cut():
    # With the index first (as streaming uploads write it), a cut file still plays up to the cut:
    # like an interrupted recording, it yields the frames that are there.
    data = video_bytes(5.0, fps=10, audio_rate=None, gop=10, faststart=True)
    got = frames(decode_file("/v/cut.mp4", data[: int(len(data) * 0.6)], preprocess()))
    assert 1 <= len(got) < 5
    assert [grey_index(f["image"]) for f in got] == [f["frame"] for f in got] == list(range(0, 10 * len(got), 10))


def test_truncated_mp4_raises(five_seconds):
    # The index (moov) of a non-faststart MP4 is at the end: cut in half, nothing is decodable.
    with pytest.raises(DecodeError, match="cut.mp4"):
        decode_file("/v/cut.mp4", five_seconds[: len(five_seconds) // 2], preprocess())


def test_garbage_video_raises():
    with pytest.raises(DecodeError, match="junk.mp4"):
        decode_file("/v/junk.mp4", bytes(range(256)) * 40, preprocess())
