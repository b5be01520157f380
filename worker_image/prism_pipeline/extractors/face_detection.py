"""face-detection: faces in images and video frames.

Two back-ends, named by `options.backend`:
- yunet (the default): libfacedetection's CNN (Shiqi Yu's YuNet family, BSD-3) through the yuface
  package, whose weights are compiled into its shared library: offline, CPU, one OpenMP thread.
  Finds small faces (about 20 px) and gives five landmarks per face. Images whose longer side
  exceeds options.maxSide are shrunk for detection (the model is meant for frames up to ~960 px);
  boxes and landmarks are mapped back to the given image.
- haar: OpenCV's Haar cascade (BSD, shipped with opencv). Chosen automatically when a Haar option
  (cascade, scaleFactor, minNeighbors, minSize) is set without `options.backend`, so older specs
  keep their back-end. Frontal faces only, more misses and false hits than yunet; no landmarks.

Output per item, best first, boxes in pixels of the decoded image (after preprocess.image.maxSide):
    yunet: {"count": n, "boxes": [[x, y, w, h], ...], "scores": [0-1, ...],
            "landmarks": [[[x, y] x 5: the face's right eye (on the image's left), left eye,
                           nose tip, right and left mouth corners], ...]}
    haar:  {"count": n, "boxes": [[x, y, w, h], ...], "scores": [the cascade's level weights]}
Options: `backend` (yunet | haar); yunet: `threshold` (0-1, default 0.5), `maxSide` (px, 960);
haar: `scaleFactor` (1.1), `minNeighbors` (5), `minSize` (24 px), `cascade` (file name under
cv2.data.haarcascades, default haarcascade_frontalface_default.xml). No back-end takes a model URI.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from prism_pipeline.model_uris import installed_version

from .base import Extractor, Payload
from .hf_models import rgb_images

BACKENDS = ("yunet", "haar")
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
HAAR_OPTIONS = ("cascade", "scaleFactor", "minNeighbors", "minSize")
YUNET_OPTIONS = ("threshold", "maxSide")
THREADS = 1  # libfacedetection's OpenMP threads per actor: Ray runs several actors per node


class FaceDetection(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        haar_set = [name for name in HAAR_OPTIONS if name in self.options]
        self.backend = self.option("backend", "haar" if haar_set else "yunet", str)
        if self.backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self.backend!r})")
        if spec.model:
            raise ValueError("face-detection uses the models shipped with its back-end (yunet: the yuface "
                             "package; haar: OpenCV's cascades, picked with options.cascade); remove model")
        self._cascade_name = self.option("cascade", DEFAULT_CASCADE, str)
        self._scale = float(self.option("scaleFactor", 1.1, (int, float)))
        self._neighbours = self.option("minNeighbors", 5, int)
        self._min_size = self.option("minSize", 24, int)
        self._threshold = float(self.option("threshold", 0.5, (int, float)))
        self._max_side = self.option("maxSide", 960, int)
        if self._scale <= 1.0:
            raise ValueError(f"options.scaleFactor must be > 1 (got {self._scale})")
        if not 0.0 <= self._threshold <= 1.0:
            raise ValueError(f"extractor {self.name!r}: options.threshold must be in [0, 1] (got {self._threshold})")
        if self._max_side < 64:
            raise ValueError(f"extractor {self.name!r}: options.maxSide must be >= 64 (got {self._max_side})")
        other = HAAR_OPTIONS if self.backend == "yunet" else YUNET_OPTIONS
        wrong = [name for name in other if name in self.options]
        if wrong:
            owner = "haar" if self.backend == "yunet" else "yunet"
            raise ValueError(f"extractor {self.name!r}: options.{wrong[0]} applies to options.backend {owner} "
                             f"only (this one is {self.backend}); remove it or change options.backend")

    @property
    def version(self) -> str:
        if self.backend == "yunet":
            return f"yuface=={_yuface_version(self.name)}/libfacedetection"
        import cv2

        return f"opencv-haar/{self._cascade_name}@{cv2.__version__}"

    def setup(self) -> None:
        import cv2

        self._cv2 = cv2
        if self.backend == "yunet":
            _yuface_version(self.name)
            import yuface

            self._yuface = yuface
            self._omp_set_threads = _omp_set_threads(yuface)
            return
        path = os.path.join(cv2.data.haarcascades, os.path.basename(self._cascade_name))
        self._detector = cv2.CascadeClassifier(path)
        if self._detector.empty():
            raise ValueError(f"extractor {self.name!r}: options.cascade {self._cascade_name!r} is not a "
                             f"cascade shipped with OpenCV (looked in {cv2.data.haarcascades})")

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        detect = self._detect_yunet if self.backend == "yunet" else self._detect
        return [detect(image) for image in rgb_images(items)]

    def _detect_yunet(self, image: np.ndarray) -> dict[str, Any]:
        cv2 = self._cv2
        height, width = image.shape[:2]
        scale = min(1.0, self._max_side / max(height, width))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            scale = size[0] / width  # the scale actually applied (rounded to whole pixels)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        if self._omp_set_threads is not None:
            self._omp_set_threads(THREADS)  # per calling thread: set before every call
        with warnings.catch_warnings():
            # yuface warns above 960 px; a larger options.maxSide asks for exactly that.
            warnings.simplefilter("ignore", UserWarning)
            confs, boxes, landmarks = self._yuface.detect(bgr, conf=self._threshold)
        found = []
        for conf, box, marks in zip(confs.tolist(), boxes.tolist(), landmarks.tolist(), strict=True):
            x, y, w, h = (v / scale for v in box)
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(width, round(x + w)), min(height, round(y + h))
            points = [[min(width - 1, max(0, round(marks[i] / scale))),
                       min(height - 1, max(0, round(marks[i + 1] / scale)))] for i in range(0, 10, 2)]
            found.append((conf / 100.0, [x0, y0, x1 - x0, y1 - y0], points))
        found.sort(key=lambda f: -f[0])
        return {"count": len(found), "boxes": [f[1] for f in found], "scores": [round(f[0], 4) for f in found],
                "landmarks": [f[2] for f in found]}

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


def _yuface_version(name: str) -> str:
    return installed_version("yuface", f"extractor {name!r}: options.backend yunet", "set options.backend: haar")


def _omp_set_threads(yuface):
    """omp_set_num_threads of the OpenMP runtime the yuface wheel bundles (yuface.libs/libgomp-*),
    which would otherwise start one thread per core of the node in every actor; None when the
    wheel bundles none (then OMP_NUM_THREADS, which Ray sets for its workers, applies)."""
    import ctypes
    import glob

    libs = os.path.join(os.path.dirname(os.path.dirname(yuface.__file__)), "yuface.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libgomp*.so*"))):
        try:
            return ctypes.CDLL(path).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None
