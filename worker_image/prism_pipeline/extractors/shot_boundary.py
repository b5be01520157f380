"""shot-boundary: hard cuts in video from colour-histogram changes between sampled frames.

A per-file extractor: it needs the frames of one video in order, so the read stage runs it on each
decoded video (see Extractor.per_file). Output per frame:
{"shot": index of the shot the frame belongs to, "cut": true on the first frame of a new shot,
 "score": Bhattacharyya distance to the previous sampled frame (0 same, 1 disjoint)}.
Options: threshold (0.45), bins ([16, 8] hue x saturation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Extractor, Payload


class ShotBoundary(Extractor):
    modalities = frozenset({"image"})
    output = Payload()
    per_file = True

    def __init__(self, spec):
        super().__init__(spec)
        if spec.model:
            raise ValueError("shot-boundary needs no model; remove model")
        self._threshold = float(self.option("threshold", 0.45, (int, float)))
        bins = self.option("bins", [16, 8], list)
        if len(bins) != 2 or not all(isinstance(b, int) and 2 <= b <= 256 for b in bins):
            raise ValueError(f"options.bins must be two integers in 2..256 (got {bins!r})")
        self._bins = bins
        if not 0 < self._threshold < 1:
            raise ValueError(f"options.threshold must be between 0 and 1 (got {self._threshold})")

    @property
    def version(self) -> str:
        return "hsv-histogram-bhattacharyya/1"

    def accepts(self, item: dict) -> bool:
        return item.get("modality") == "image" and item.get("file_modality") == "video"

    def setup(self) -> None:
        import cv2

        self._cv2 = cv2

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        """`items`: the sampled frames of one video (sorted by frame here, answers in input order)."""
        out: list[dict[str, Any]] = [{}] * len(items)
        shot, previous = 0, None
        for i in sorted(range(len(items)), key=lambda i: items[i].get("frame") or 0):
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

