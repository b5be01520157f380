"""Every frame of a video, shrunk, collected in the same decode pass as the sampled frames (what the
read stage asks for on behalf of shot-boundary's TransNetV2)."""

from __future__ import annotations

import numpy as np
import pytest

from prism_pipeline.preprocess import decode_file, iter_items
from prism_pipeline.preprocess.video import ThumbnailRequest

from .conftest import preprocess, video_bytes


@pytest.fixture(scope="module")
def five_seconds() -> bytes:
    return video_bytes(5.0, fps=10, gop=10, audio_rate=None)  # frame n has grey level 5n


def decode_with(data: bytes, requests: list[ThumbnailRequest], **video) -> tuple[list[dict], dict]:
    collected = dict.fromkeys(requests)
    decoded = iter_items("/v/clip.mp4", data, preprocess(video={"audio": False, **video}), thumbnails=collected)
    return list(decoded), collected


def test_every_frame_is_collected_beside_the_same_sampled_frames(five_seconds):
    request = ThumbnailRequest(16, 9, 1000)
    items, collected = decode_with(five_seconds, [request], framesPerSecond=2)
    plain = decode_file("/v/clip.mp4", five_seconds, preprocess(video={"framesPerSecond": 2, "audio": False}))
    assert [i["key"] for i in items] == [i["key"] for i in plain]
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(items, plain, strict=True))
    thumbs = collected[request]
    assert thumbs.images.shape == (50, 9, 16, 3) and thumbs.images.dtype == np.uint8
    assert thumbs.frames.tolist() == list(range(50)) and thumbs.stride == 1
    assert thumbs.timestamps.tolist() == pytest.approx([n / 10 for n in range(50)])
    greys = [round(float(img.mean()) / 5) for img in thumbs.images]
    assert greys == list(range(50))  # the right pixels, in presentation order


def test_beyond_max_frames_every_kth_frame_is_kept(five_seconds):
    request = ThumbnailRequest(8, 8, 20)
    _, collected = decode_with(five_seconds, [request])
    thumbs = collected[request]
    assert thumbs.stride == 3 and len(thumbs.frames) <= 20
    assert thumbs.frames.tolist() == list(range(0, 50, 3))
    assert [round(float(img.mean()) / 5) for img in thumbs.images] == list(range(0, 50, 3))


def test_two_requests_in_one_pass(five_seconds):
    small, big = ThumbnailRequest(4, 4, 1000), ThumbnailRequest(48, 27, 10)
    _, collected = decode_with(five_seconds, [small, big])
    assert collected[small].images.shape == (50, 4, 4, 3)
    assert collected[big].images.shape == (10, 27, 48, 3) and collected[big].stride == 5


def test_no_request_or_no_video_collects_nothing(five_seconds):
    items, collected = decode_with(five_seconds, [])
    assert collected == {} and len(items) == 5
    request = ThumbnailRequest(16, 9, 100)
    found = dict.fromkeys([request])
    list(iter_items("/v/a.wav", _wav(), preprocess(), thumbnails=found))
    assert found == {request: None}


def _wav() -> bytes:
    from .conftest import wav_bytes

    return wav_bytes(1.0)
