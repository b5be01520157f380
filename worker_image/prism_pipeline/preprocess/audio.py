"""Audio: one decode of the track, resampled by libswresample to mono float32, cut into chunks."""

from __future__ import annotations

import numpy as np

from .items import DecodeError


def decode_audio_stream(container, stream, sample_rate: int, name: str) -> np.ndarray:
    """The whole audio stream as mono float32 at sample_rate (PyAV's AudioResampler)."""
    import av
    from av.audio.resampler import AudioResampler

    stream.thread_type = "AUTO"
    resampler = AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as err:
        if not parts:
            raise DecodeError(f"{name}: audio track cannot be decoded ({err})") from err
        # A damaged tail: keep what decoded (the usual outcome of a truncated recording).
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def chunk_bounds(num_samples: int, sample_rate: int, chunk_seconds: float) -> list[tuple[int, int]]:
    """[start, end) sample ranges of chunk_seconds each; the last one holds the remainder."""
    step = max(1, round(chunk_seconds * sample_rate))
    return [(s, min(s + step, num_samples)) for s in range(0, num_samples, step)]


def open_container(data: bytes, name: str):
    import io

    import av

    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise DecodeError(f"{name}: not a readable media file ({err})") from err
