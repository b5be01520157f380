"""face-detection: OpenCV's Haar cascade over images and video frames.

Output per item: {"count": n, "boxes": [[x, y, w, h], ...], "scores": [...]}, boxes in pixels of
the decoded image (after preprocess.image.maxSide), scores the cascade's level weights.
Options: scaleFactor (1.1), minNeighbors (5), minSize (24 px), cascade (file name under
cv2.data.haarcascades, default haarcascade_frontalface_default.xml).
"""

from __future__ import annotations

import os
from typing import Any

from .base import Extractor, Payload

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetection(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        if spec.model:
            raise ValueError("face-detection uses OpenCV's packaged Haar cascades; remove model "
                             "(pick a cascade with options.cascade)")
        self._cascade_name = self.option("cascade", DEFAULT_CASCADE, str)
        self._scale = float(self.option("scaleFactor", 1.1, (int, float)))
        self._neighbours = self.option("minNeighbors", 5, int)
        self._min_size = self.option("minSize", 24, int)
        if self._scale <= 1.0:
            raise ValueError(f"options.scaleFactor must be > 1 (got {self._scale})")

    @property
    def version(self) -> str:
        import cv2

        return f"opencv-haar/{self._cascade_name}@{cv2.__version__}"

    def setup(self) -> None:
        import cv2

        path = os.path.join(cv2.data.haarcascades, os.path.basename(self._cascade_name))
        self._cv2 = cv2
        self._detector = cv2.CascadeClassifier(path)
        if self._detector.empty():
            raise ValueError(f"extractor {self.name!r}: options.cascade {self._cascade_name!r} is not a "
                             f"cascade shipped with OpenCV (looked in {cv2.data.haarcascades})")

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        return [self._detect(item["image"]) for item in items]

    def _detect(self, image) -> dict[str, Any]:
        cv2 = self._cv2
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._detector.detectMultiScale3(
            gray, scaleFactor=self._scale, minNeighbors=self._neighbours,
            minSize=(self._min_size, self._min_size), outputRejectLevels=True,
        )
        found = sorted(zip([list(map(int, b)) for b in boxes], [float(w) for w in weights], strict=True),
                       key=lambda bw: -bw[1])
        return {"count": len(found), "boxes": [b for b, _ in found],
                "scores": [round(w, 4) for _, w in found]}
