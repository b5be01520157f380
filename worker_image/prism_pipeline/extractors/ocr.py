"""ocr: text in images and video frames, read by the Tesseract binary (Debian's tesseract-ocr).

Each image goes to `tesseract stdin stdout ... tsv` as PNG, with a timeout; the TSV's words are
grouped into lines. Output per item:
    {"text": "all lines, newline-separated", "lines": [{"text": ..., "box": [x, y, w, h],
     "confidence": 0-100}]}
Boxes are in pixels of the decoded image. Options: `language` (Tesseract language codes, "eng";
several as "eng+deu"; each needs its tesseract-ocr-<code> package), `psm` (page segmentation mode,
3 = automatic), `minConfidence` (drop words below it, 0-100, default 30), `timeoutSeconds` (per
image, 60). There is no model URI: the language data ships with the Debian packages.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from functools import cached_property
from typing import Any

from prism_pipeline.model_uris import ModelError

from .base import Extractor, Payload
from .hf_models import rgb_images


class OCR(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        if spec.model:
            raise ValueError("ocr runs the tesseract binary; remove model (choose languages with "
                             "options.language)")
        self._language = self.option("language", "eng", str)
        self._psm = self.option("psm", 3, int)
        self._min_confidence = float(self.option("minConfidence", 30, (int, float)))
        self._timeout = float(self.option("timeoutSeconds", 60, (int, float)))
        if not 0 <= self._psm <= 13:
            raise ValueError(f"extractor {self.name!r}: options.psm must be a Tesseract page segmentation "
                             f"mode 0..13 (got {self._psm})")
        if not 0 <= self._min_confidence <= 100:
            raise ValueError(f"extractor {self.name!r}: options.minConfidence must be in 0..100 "
                             f"(got {self._min_confidence})")
        if self._timeout <= 0:
            raise ValueError(f"extractor {self.name!r}: options.timeoutSeconds must be > 0")

    @cached_property
    def _binary(self) -> str:
        binary = shutil.which("tesseract")
        if binary is None:
            raise ModelError(f"extractor {self.name!r}: the tesseract binary is not installed in this worker; "
                               "install Debian's tesseract-ocr (apt-get install -y tesseract-ocr, as the "
                               "Prism worker image does) or remove the ocr extractor")
        return binary

    @cached_property
    def version(self) -> str:
        out = self._run(["--version"], timeout=30).stdout.decode(errors="replace").split()
        return f"tesseract-{out[1] if len(out) > 1 else 'unknown'}/{self._language}/psm={self._psm}"

    def setup(self) -> None:
        listed = self._run(["--list-langs"], timeout=30).stdout.decode(errors="replace").split()[1:]
        missing = [code for code in self._language.split("+") if code not in listed]
        if missing:
            raise ModelError(f"extractor {self.name!r}: options.language {self._language!r}: tesseract has no "
                               f"data for {', '.join(missing)} (installed: {', '.join(listed)}); install "
                               f"tesseract-ocr-{missing[0]}")

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        return [self._read(image) for image in rgb_images(items)]

    def _read(self, image) -> dict[str, Any]:
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG", compress_level=1)
        result = self._run(["stdin", "stdout", "-l", self._language, "--psm", str(self._psm), "tsv"],
                           timeout=self._timeout, data=png.getvalue())
        lines = _lines(result.stdout.decode("utf-8", errors="replace"), self._min_confidence)
        return {"text": "\n".join(line["text"] for line in lines), "lines": lines}

    def _run(self, args: list[str], timeout: float, data: bytes | None = None) -> subprocess.CompletedProcess:
        # One thread per call: Ray runs several actors per node, and Tesseract's OpenMP threads
        # would otherwise oversubscribe the cores (its own documentation recommends this).
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            result = subprocess.run([self._binary, *args], input=data, capture_output=True, timeout=timeout,
                                    env=env, check=False)
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"tesseract took longer than options.timeoutSeconds={timeout:g}") from err
        if result.returncode != 0:
            raise RuntimeError(f"tesseract {' '.join(args[:1])} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace').strip()[-300:]}")
        return result


def _lines(tsv: str, min_confidence: float) -> list[dict[str, Any]]:
    """Tesseract TSV rows (level 5 = word) -> lines with a bounding box and mean confidence."""
    grouped: dict[tuple[int, int, int, int], list[tuple[str, float, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        confidence = float(cols[10])
        if confidence < min_confidence:
            continue
        page, block, par, line = (int(c) for c in cols[1:5])
        left, top, width, height = (int(c) for c in cols[6:10])
        grouped.setdefault((page, block, par, line), []).append(
            (cols[11].strip(), confidence, left, top, left + width, top + height))
    lines = []
    for words in grouped.values():
        x0, y0 = min(w[2] for w in words), min(w[3] for w in words)
        x1, y1 = max(w[4] for w in words), max(w[5] for w in words)
        lines.append({"text": " ".join(w[0] for w in words), "box": [x0, y0, x1 - x0, y1 - y0],
                      "confidence": round(sum(w[1] for w in words) / len(words), 1)})
    return lines
