"""Small media made on the fly (PyAV, Pillow) so each test controls exactly what it decodes."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from prism_api import Preprocess

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


def make_media():
    """examples/make_media.py as a module (its PDF writer and media helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_media", MEDIA.parent / "make_media.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preprocess(**sections) -> Preprocess:
    """Preprocess from camelCase sections, e.g. preprocess(video={"framesPerSecond": 2})."""
    return Preprocess.model_validate(sections)


def jpeg_bytes(width: int, height: int, *, exif_orientation: int | None = None, quality: int = 90) -> bytes:
    """A gradient JPEG: red grows left to right, green top to bottom (so orientation is checkable)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, np.full_like(x, 64)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def video_bytes(seconds: float, fps: int = 10, size=(64, 48), *, audio_rate: int | None = 22050,
                container: str = "mp4", gop: int | None = None, preset: str = "ultrafast",
                codec: str = "libx264", faststart: bool = False) -> bytes:
    """An H.264 (or `codec`) video whose frame n is filled with grey level (n * 5) % 256 (so a
    decoded frame tells which source frame it is), optionally with a 440 Hz AAC track."""
    frames = round(seconds * fps)
    if faststart:  # the index (moov) first: FFmpeg rewrites the file, so it needs a real path
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"v.{container}"
            _write_video(str(path), frames, fps, size, audio_rate, container, gop, preset, codec,
                         {"movflags": "faststart"})
            return path.read_bytes()
    buf = io.BytesIO()
    _write_video(buf, frames, fps, size, audio_rate, container, gop, preset, codec, {})
    return buf.getvalue()


def _write_video(target, frames, fps, size, audio_rate, container, gop, preset, codec, options) -> None:
    seconds = frames / fps
    with av.open(target, "w", format=container, options=options) as out:
        opts = {"preset": preset, "threads": "1"} if codec == "libx264" else {}  # ultrafast: no B-frames
        if gop:
            opts["g"] = str(gop)
        video = out.add_stream(codec, rate=fps, options=opts)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        sound = out.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        for n in range(frames):
            img = np.full((size[1], size[0], 3), (n * 5) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            total = int(seconds * audio_rate)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / audio_rate)).astype(np.float32)
            for i in range(0, total, 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = audio_rate, i
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)


def wav_bytes(seconds: float, rate: int = 44100, channels: int = 2, freq: float = 440.0) -> bytes:
    """A PCM WAV sine at `freq` (all channels equal)."""
    n = int(seconds * rate)
    wave = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate) * 32767).astype(np.int16)
    buf = io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.repeat(wave[None, :], channels, 0).T.reshape(1, -1).copy(),
                                           format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"{MEDIA} is missing; run examples/make_media.py")
    return MEDIA
