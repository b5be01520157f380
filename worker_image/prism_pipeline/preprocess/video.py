"""Video: sampled frames (framesPerSecond, at most maxFrames, evenly spread beyond) and the audio track.

A cheap demux pass (no decoding) indexes every video packet: its timestamp and whether it is a
keyframe. That fixes the duration, which source frames are wanted, and where to seek: a wanted
frame in a later GOP is reached by seeking to its keyframe instead of decoding everything between.
Only the wanted frames are converted to RGB, scaled to maxSide inside libswscale.

Sequence models (TransNetV2 for shot cuts) need every frame, not the sampled ones. A caller that
wants them passes `thumbnails` (requests -> None) to decode_frames (via preprocess.iter_items): the
same pass then decodes the stream from the start without seeking, shrinks every frame (or every
k-th, to stay within the request's max_frames) to the requested size, stores them in that dict once
the video is decoded, and still yields only the sampled frames. The read stage does this for
per-file extractors that set a `thumbnails` request (shot-boundary).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .image import check_pixels, fit_within
from .items import DecodeError


@dataclass
class SampledFrame:
    frame: int            # index of the frame in the source (presentation order)
    timestamp: float      # seconds from the start of the video
    image: np.ndarray     # HxWx3 uint8 RGB


@dataclass(frozen=True)
class ThumbnailRequest:
    """Every frame of a video at width x height (aspect ratio not kept), at most max_frames of them:
    beyond that, every k-th frame with k = ceil(frames / max_frames). Memory: width * height * 3 *
    max_frames bytes per video (48 x 27 x 3600: 14 MB)."""

    width: int
    height: int
    max_frames: int


@dataclass
class Thumbnails:
    """What a ThumbnailRequest collected from one video, in presentation order."""

    images: np.ndarray      # [T, height, width, 3] uint8 RGB
    frames: np.ndarray      # [T] int64: each thumbnail's source frame index (as SampledFrame.frame)
    timestamps: np.ndarray  # [T] float64: seconds from the start of the video
    stride: int             # every stride-th source frame (1: every frame)


@dataclass
class _Index:
    pts: list[int]        # presentation timestamps of every frame, sorted
    keyframes: list[int]  # pts of keyframes, sorted
    start: int
    duration: float       # seconds


def sample_times(duration: float, fps: float, max_frames: int) -> list[float]:
    """Seconds to sample: every 1/fps, or max_frames evenly spread when that would be more."""
    if duration <= 0:
        return [0.0]
    count = max(1, math.ceil(duration * fps - 1e-9))
    if count <= max_frames:
        return [k / fps for k in range(count)]
    return [k * duration / max_frames for k in range(max_frames)]


@dataclass
class FramePlan:
    """Which frames to decode, fixed by the packet index before any is decoded."""

    index: _Index
    targets: list[int]    # pts of the wanted frames, ascending, distinct
    time_base: float


def plan_frames(container, stream, fps: float, max_frames: int, name: str, max_source_frames: int | None = None,
                max_pixels: int | None = None) -> FramePlan:
    """The frames to sample (framesPerSecond, at most maxFrames), from a demux pass that decodes
    nothing. Raises DecodeError for a stream that cannot be indexed or has no frames, whose frames
    are larger than max_pixels (image.maxPixels, from the stream header) or that has more than
    max_source_frames frames (video.maxSourceFrames: the index is held in memory)."""
    import av

    stream.thread_type = "AUTO"
    if max_pixels is not None:
        check_pixels(stream.codec_context.width or 0, stream.codec_context.height or 0, max_pixels, name)
    try:
        index = _index(container, stream, max_source_frames, name)
    except av.error.FFmpegError as err:
        raise DecodeError(f"{name}: video cannot be read ({err})") from err
    if index is None:
        raise DecodeError(f"{name}: the video stream has no frames")
    tb = float(stream.time_base)
    wanted = sorted({_frame_at(index, index.start + round(t / tb))
                     for t in sample_times(index.duration, fps, max_frames)})
    return FramePlan(index, [index.pts[i] for i in wanted], tb)


def decode_frames(container, stream, plan: FramePlan, max_side: int, name: str,
                  thumbnails: dict[ThumbnailRequest, Thumbnails | None] | None = None) -> Iterator[SampledFrame]:
    """The planned frames in order, decoded as they are needed: at most one per target, so never
    more than len(plan.targets). Each source frame comes at most once (asking for more frames per
    second than the video has gives every frame). A stream that breaks after some frames (a damaged
    tail) ends the sequence short of the plan; one that yields none raises. `thumbnails`: requests
    (keys) for every frame, shrunk; filled in once the stream is decoded (or breaks)."""
    import av

    index, tb = plan.index, plan.time_base
    produced = 0
    requested = thumbnails
    if requested:
        collectors = [_Collector(r, len(index.pts), index.start, tb) for r in requested]
        frames = _decode_every(container, stream, index, plan.targets, max_side, collectors)
    else:
        collectors, frames = [], _decode_wanted(container, stream, index, plan.targets, max_side)
    try:
        for p, img in frames:
            produced += 1
            yield SampledFrame(_frame_at(index, p), round((p - index.start) * tb, 6), img)
    except av.error.FFmpegError as err:
        if not produced:
            raise DecodeError(f"{name}: video cannot be decoded ({err})") from err
        return
    finally:
        for c in collectors:  # what was collected, also when a damaged stream ends early
            requested[c.request] = c.result()
    if not produced:
        raise DecodeError(f"{name}: no video frame could be decoded")


class _Collector:
    """Thumbnails of every stride-th frame for one request, into arrays sized up front."""

    def __init__(self, request: ThumbnailRequest, frames: int, start: int, time_base: float):
        self.request, self.start, self.time_base = request, start, time_base
        self.stride = max(1, math.ceil(frames / max(1, request.max_frames)))
        slots = math.ceil(frames / self.stride)
        self.images = np.zeros((slots, request.height, request.width, 3), np.uint8)
        self.frames = np.full(slots, -1, np.int64)
        self.timestamps = np.zeros(slots, np.float64)

    def add(self, n: int, ts: int, frame) -> None:
        slot, rest = divmod(n, self.stride)
        if rest or slot >= len(self.frames) or self.frames[slot] >= 0:
            return  # not a kept frame, or one already seen (a damaged stream repeating pts)
        width, height = self.request.width, self.request.height
        turns = ((getattr(frame, "rotation", 0) or 0) // 90) % 4
        if turns % 2:  # shrink to the transposed size, so the rotated thumbnail has the requested one
            width, height = height, width
        img = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        self.images[slot] = np.rot90(img, k=turns) if turns else img
        self.frames[slot] = n
        self.timestamps[slot] = round((ts - self.start) * self.time_base, 6)

    def result(self) -> Thumbnails:
        kept = self.frames >= 0
        return Thumbnails(self.images[kept], self.frames[kept], self.timestamps[kept], self.stride)


def _decode_every(container, stream, index: _Index, targets: list[int], max_side: int,
                  collectors: list[_Collector]) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, RGB image) of the target frames, like _decode_wanted, from one sequential pass over the
    whole stream (no seeking) that hands every frame to the thumbnail collectors. Decoding goes on
    to the end of the stream after the last target, for the thumbnails."""
    container.seek(0)  # the plan's demux pass left the container at its end
    i = 0
    for frame in container.decode(stream):
        ts = frame.pts if frame.pts is not None else frame.dts
        if ts is None:
            continue
        n = _frame_at(index, ts)
        for c in collectors:
            c.add(n, ts, frame)
        if i < len(targets) and ts >= targets[i]:
            yield targets[i], _rgb(frame, max_side)
            i += 1
            while i < len(targets) and targets[i] <= ts:
                i += 1  # a damaged stream skipped past these; the frame shown covers them


def _index(container, stream, max_frames: int | None = None, name: str = "") -> _Index | None:
    """Timestamps and keyframes of every video packet, without decoding any of them; DecodeError
    past max_frames packets (spec.preprocess.video.maxSourceFrames), so the index stays bounded."""
    import av

    pts, keyframes, last_duration = [], [], 0
    try:
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.size == 0:
                continue  # the flush packet at the end, or a packet with no timestamp to place
            if max_frames is not None and len(pts) >= max_frames:
                raise DecodeError(f"{name}: video has more than {max_frames} frames "
                                  f"(spec.preprocess.video.maxSourceFrames={max_frames}); raise maxSourceFrames "
                                  "or exclude the file")
            pts.append(ts)
            if packet.is_keyframe:
                keyframes.append(ts)
            last_duration = packet.duration or 0
    except av.error.FFmpegError:
        if not pts:
            raise
        # A damaged tail: index what came before it, as a player would play up to it.
    if not pts:
        return None
    pts.sort()
    keyframes.sort()
    if not keyframes:
        keyframes = [pts[0]]
    tb = float(stream.time_base)
    if not last_duration:
        rate = stream.average_rate or stream.guessed_rate
        last_duration = round(1 / (float(rate) * tb)) if rate else 0
    return _Index(pts, keyframes, pts[0], (pts[-1] + last_duration - pts[0]) * tb)


def _frame_at(index: _Index, ts: int) -> int:
    """The frame on screen at timestamp ts: the last one that starts at or before it."""
    return max(0, bisect.bisect_right(index.pts, ts) - 1)


def _decode_wanted(container, stream, index: _Index, targets: list[int],
                   max_side: int) -> Iterator[tuple[int, np.ndarray]]:
    """(pts, RGB image) of the frames with the given pts (ascending). Seeks forward to a target's
    keyframe when that keyframe lies beyond the one being decoded; otherwise keeps decoding.

    Some containers seek only approximately (MPEG-TS/PS estimate from byte offsets) or not at all.
    If a seek fails or lands past its target, the rest is decoded from the start without seeking.
    """
    import av

    frames = None
    current_kf: int | None = None
    seekable = True
    i = 0
    while i < len(targets):
        target = targets[i]
        kf = index.keyframes[max(0, bisect.bisect_right(index.keyframes, target) - 1)]
        just_sought = False
        if frames is None or (seekable and (current_kf is None or kf > current_kf)):
            if seekable:
                try:
                    container.seek(kf, stream=stream, backward=True, any_frame=False)
                except av.error.FFmpegError:
                    seekable = False
            if not seekable:
                container.seek(0)  # the container's start, in av.time_base units
            frames = container.decode(stream)
            current_kf, just_sought = kf, seekable
        reached = False
        for frame in frames:
            ts = frame.pts if frame.pts is not None else frame.dts
            if ts is None:
                continue
            if just_sought:
                just_sought = False
                if ts > target:
                    seekable, frames = False, None  # overshot: go sequential from the start
                    break
            if frame.key_frame:
                current_kf = ts
            if ts < target:
                continue
            yield target, _rgb(frame, max_side)
            i += 1
            while i < len(targets) and targets[i] <= ts:
                i += 1  # a damaged stream skipped past these; the frame shown covers them
            reached = True
            break
        if frames is None:
            continue  # retry this target without seeking
        if not reached:
            break  # end of stream


def _rgb(frame, max_side: int) -> np.ndarray:
    width, height = fit_within(frame.width, frame.height, max_side)
    img = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        # Phone videos store "display rotated by N degrees" (counter-clockwise) as side data.
        img = np.ascontiguousarray(np.rot90(img, k=(rotation // 90) % 4))
    return img
