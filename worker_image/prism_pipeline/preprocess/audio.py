"""Audio: one decode of the track, resampled by libswresample to mono float32, cut into chunks.

The decoded samples are spooled to an anonymous temporary file as they come, never held whole in
memory (six hours of silence compress to 4 MB of FLAC and decode to 1.4 GB of float samples at
16 kHz): the number of chunks is known once the track is decoded, and each chunk is read back from
the spool when it is taken. Decoding stops at spec.preprocess.audio.maxDurationSeconds.
"""

from __future__ import annotations

import io
import math
import tempfile
from typing import BinaryIO

import numpy as np

from .items import DecodeError

_FLOAT = np.dtype(np.float32)


class AudioTooLong(DecodeError):
    """The track runs past maxDurationSeconds."""


class SpooledSamples:
    """Mono float32 samples in a temporary file: `len()` of them, read back by range."""

    def __init__(self, spool: BinaryIO, count: int):
        self._spool, self.count = spool, count

    def __len__(self) -> int:
        return self.count

    def read(self, start: int, end: int) -> np.ndarray:
        self._spool.seek(start * _FLOAT.itemsize)
        data = self._spool.read((end - start) * _FLOAT.itemsize)
        return np.frombuffer(data, dtype=np.float32).copy()

    def close(self) -> None:
        self._spool.close()


def spool_audio_stream(container, stream, sample_rate: int, max_seconds: float, name: str) -> SpooledSamples:
    """The whole audio stream as mono float32 at sample_rate (PyAV's AudioResampler), written to a
    temporary file frame by frame. Raises AudioTooLong past max_seconds, DecodeError when nothing
    decodes; a damaged tail keeps what decoded before it."""
    import av
    from av.audio.resampler import AudioResampler

    limit = math.ceil(max_seconds * sample_rate)
    stream.thread_type = "AUTO"
    resampler = AudioResampler(format="flt", layout="mono", rate=sample_rate)
    spool = tempfile.TemporaryFile(prefix="prism-audio-")  # noqa: SIM115 - closed by SpooledSamples
    count = 0

    def write(frames) -> None:
        nonlocal count
        for out in frames:
            samples = np.ascontiguousarray(out.to_ndarray().reshape(-1), dtype=np.float32)
            count += len(samples)
            if count > limit:
                raise AudioTooLong(f"{name}: audio longer than {max_seconds:g}s "
                                   f"(spec.preprocess.audio.maxDurationSeconds={max_seconds:g}); raise "
                                   "maxDurationSeconds to decode longer tracks, or exclude the file")
            spool.write(samples.tobytes())

    try:
        try:
            for frame in container.decode(stream):
                write(resampler.resample(frame))
            write(resampler.resample(None))
        except av.error.FFmpegError as err:
            if not count:
                raise DecodeError(f"{name}: audio track cannot be decoded ({err})") from err
            # A damaged tail: keep what decoded (the usual outcome of a truncated recording).
    except BaseException:
        spool.close()
        raise
    spool.flush()
    return SpooledSamples(spool, count)


def chunk_bounds(num_samples: int, sample_rate: int, chunk_seconds: float) -> range:
    """Start samples of chunks of chunk_seconds each (the last one holds the remainder): chunk i
    is [start, min(start + step, num_samples)) with step = the range's step."""
    step = max(1, round(chunk_seconds * sample_rate))
    return range(0, num_samples, step)


def open_container(data: bytes | BinaryIO, name: str):
    """A PyAV container reading the bytes, or a binary file (read as needed, never whole)."""
    import av

    try:
        return av.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, mode="r",
                       metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise DecodeError(f"{name}: not a readable media file ({err})") from err
