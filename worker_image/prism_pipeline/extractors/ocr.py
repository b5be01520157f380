"""ocr: text in images and video frames.

Two back-ends, named by `options.backend`:
- rapidocr (the default): RapidOCR (Apache-2.0) on onnxruntime with the PP-OCRv6 small text
  detector and recogniser and the PP-OCR mobile orientation classifier, all ONNX files shipped
  inside the rapidocr wheel (Apache-2.0, see its MODEL_LICENSES.md): offline, CPU, 2 onnxruntime
  threads. The detector sees the image with its longer side at most 960 px (never upscaled). Reads
  Chinese, Japanese and Latin-script languages (English, German with umlauts, French, ...) in one
  model, including text on photos (signs, overlays) that Tesseract misses.
  Other PP-OCR models (larger, other scripts) are not selectable yet: `model` must stay empty.
- tesseract: the Tesseract binary (Debian's tesseract-ocr): each image goes to `tesseract stdin
  stdout ... tsv` as PNG, with a timeout; the TSV's words are grouped into lines. Best on clean
  scanned pages; chosen automatically when a Tesseract option (language, psm, timeoutSeconds) is
  set without `options.backend`, so older specs keep their back-end.

Output per item:
    {"text": "all lines, newline-separated", "lines": [{"text": ..., "box": [x, y, w, h],
     "confidence": 0-100}]}
Lines are in reading order (top to bottom, left to right within a row). Boxes are axis-aligned, in
pixels of the decoded image (rapidocr's are the bounding boxes of its quadrilaterals). The text is
also added to the item's `text` (base.add_text), so a text-embedding stage listed after this one
embeds the words read and a text query finds the photo of a sign.
Options: `backend` (rapidocr | tesseract), `minConfidence` (drop lines (rapidocr) or words
(tesseract) below it, 0-100; default 50 for rapidocr, 30 for tesseract); rapidocr only: `minChars`
(drop lines with fewer letters or digits, default 2: the detector reads a lone "8" into a cup's rim
or a "0" into a round logo with high confidence, and a one-character line would then be embedded
as the item's text); tesseract only:
`language` (Tesseract language codes, "eng"; several as "eng+deu"; each needs its
tesseract-ocr-<code> package), `psm` (page segmentation mode, 3 = automatic), `timeoutSeconds`
(per image, 60). There is no model URI for either back-end.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
from functools import cached_property
from typing import Any

import numpy as np

from prism_pipeline.model_uris import ModelError, installed_version

from .base import Extractor, Payload, add_text
from .hf_models import rgb_images

BACKENDS = ("rapidocr", "tesseract")
TESSERACT_OPTIONS = ("language", "psm", "timeoutSeconds")  # set without options.backend: tesseract
MIN_CONFIDENCE = {"rapidocr": 50, "tesseract": 30}
# The PP-OCRv6 small models inside the rapidocr wheel (rapidocr/models/).
RAPIDOCR_MODELS = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx",
                   "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
DETECT_SIDE = 960  # the detector's input: longer side at most this (rapidocr's default upscales wide frames)
MIN_CHARS = 2      # rapidocr lines with fewer letters/digits are dropped (see options.minChars)
THREADS = 2        # onnxruntime intra-op threads per actor: Ray runs several actors per node


class OCR(Extractor):
    modalities = frozenset({"image"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        tesseract_set = [name for name in TESSERACT_OPTIONS if name in self.options]
        self.backend = self.option("backend", "tesseract" if tesseract_set else "rapidocr", str)
        if self.backend not in BACKENDS:
            raise ValueError(f"extractor {self.name!r}: options.backend must be one of {', '.join(BACKENDS)} "
                             f"(got {self.backend!r})")
        if spec.model:
            if self.backend == "tesseract":
                raise ValueError("ocr runs the tesseract binary; remove model (choose languages with "
                                 "options.language)")
            raise ValueError("ocr's rapidocr back-end runs the PP-OCRv6 small models shipped in the rapidocr "
                             "package; choosing other OCR models is not supported yet: remove model")
        if self.backend == "rapidocr" and tesseract_set:
            raise ValueError(f"extractor {self.name!r}: options.{tesseract_set[0]} applies to options.backend "
                             "tesseract only; remove it, or set options.backend: tesseract")
        self._language = self.option("language", "eng", str)
        self._psm = self.option("psm", 3, int)
        self._min_confidence = float(self.option("minConfidence", MIN_CONFIDENCE[self.backend], (int, float)))
        self._min_chars = self.option("minChars", MIN_CHARS, int)
        if self._min_chars < 1:
            raise ValueError(f"extractor {self.name!r}: options.minChars must be >= 1 (got {self._min_chars})")
        if self.backend == "tesseract" and "minChars" in self.options:
            raise ValueError(f"extractor {self.name!r}: options.minChars applies to options.backend rapidocr only; "
                             "remove it, or set options.backend: rapidocr")
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
    def version(self) -> str:
        if self.backend == "rapidocr":
            return (f"rapidocr=={_rapidocr_version(self.name)}/PP-OCRv6-small/side={DETECT_SIDE}"
                    f"/minChars={self._min_chars}")
        out = self._run(["--version"], timeout=30).stdout.decode(errors="replace").split()
        return f"tesseract-{out[1] if len(out) > 1 else 'unknown'}/{self._language}/psm={self._psm}"

    def setup(self) -> None:
        if self.backend == "rapidocr":
            self._engine = _rapidocr(self.name, self._min_confidence)
            return
        self.preflight()

    def preflight(self) -> None:
        """The tesseract binary and the data of every options.language (rapidocr: nothing to check)."""
        if self.backend != "tesseract":
            return
        # `--list-langs` prints a header line ("List of available languages in ...:") then one code a line.
        lines = self._run(["--list-langs"], timeout=30).stdout.decode(errors="replace").splitlines()[1:]
        listed = sorted({line.strip() for line in lines if line.strip()})
        missing = [code for code in self._language.split("+") if code not in listed]
        if missing:
            raise ModelError(f"extractor {self.name!r}: options.language {self._language!r}: tesseract has no "
                             f"data for {', '.join(missing)} (installed: {', '.join(listed) or 'none'}); install "
                             f"tesseract-ocr-{missing[0]}")

    def __call__(self, items: list[dict]) -> list[dict[str, Any]]:
        read = self._read_rapidocr if self.backend == "rapidocr" else self._read
        outputs = []
        for item, image in zip(items, rgb_images(items), strict=True):
            lines = read(image)
            payload = {"text": "\n".join(line["text"] for line in lines), "lines": lines}
            add_text(item, payload["text"])
            outputs.append(payload)
        return outputs

    # --- rapidocr ---------------------------------------------------------------------------

    def _read_rapidocr(self, image: np.ndarray) -> list[dict[str, Any]]:
        result = self._engine(np.ascontiguousarray(image[:, :, ::-1]))  # rapidocr takes arrays as BGR
        if getattr(result, "boxes", None) is None or not getattr(result, "txts", None):
            return []
        height, width = image.shape[:2]
        lines = []
        for quad, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
            confidence = round(float(score) * 100, 1)
            text = text.strip()
            if confidence < self._min_confidence or sum(c.isalnum() for c in text) < self._min_chars:
                continue
            quad = np.asarray(quad, dtype=np.float64)
            x0, y0 = max(0, math.floor(quad[:, 0].min())), max(0, math.floor(quad[:, 1].min()))
            x1, y1 = min(width, math.ceil(quad[:, 0].max())), min(height, math.ceil(quad[:, 1].max()))
            lines.append({"text": text, "box": [x0, y0, max(0, x1 - x0), max(0, y1 - y0)], "confidence": confidence})
        return reading_order(lines)

    # --- tesseract --------------------------------------------------------------------------

    @cached_property
    def _binary(self) -> str:
        binary = shutil.which("tesseract")
        if binary is None:
            raise ModelError(f"extractor {self.name!r}: the tesseract binary is not installed in this worker; "
                               "install Debian's tesseract-ocr (apt-get install -y tesseract-ocr, as the "
                               "Prism worker image does) or remove the ocr extractor")
        return binary

    def _read(self, image) -> list[dict[str, Any]]:
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG", compress_level=1)
        result = self._run(["stdin", "stdout", "-l", self._language, "--psm", str(self._psm), "tsv"],
                           timeout=self._timeout, data=png.getvalue())
        return _lines(result.stdout.decode("utf-8", errors="replace"), self._min_confidence)

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


def _rapidocr_version(name: str) -> str:
    return installed_version("rapidocr", f"extractor {name!r}: options.backend rapidocr",
                             "set options.backend: tesseract")


def _rapidocr(name: str, min_confidence: float):
    """A RapidOCR engine on the wheel's own model files, quiet, on THREADS onnxruntime threads. The
    files are named explicitly so a missing one is an error here, never a download."""
    from pathlib import Path

    _rapidocr_version(name)
    import rapidocr

    folder = Path(rapidocr.__file__).parent / "models"
    paths = {task: folder / file for task, file in RAPIDOCR_MODELS.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise ModelError(f"extractor {name!r}: the rapidocr package lacks its model files ({', '.join(missing)}); "
                         "reinstall rapidocr")
    engine = rapidocr.RapidOCR(params={
        "Global.log_level": "critical",
        "Global.text_score": min_confidence / 100,
        **{f"{task}.model_path": str(path) for task, path in paths.items()},
        "Det.limit_type": "max",
        "Det.limit_side_len": DETECT_SIDE,
        "EngineConfig.onnxruntime.intra_op_num_threads": min(THREADS, os.cpu_count() or 1),
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })
    # RapidOCR opens each model on its first use; open them now, in setup, not in the first batch.
    for task in RAPIDOCR_MODELS:
        loader = getattr(engine, f"_load_{task.lower()}_model", None)
        if callable(loader):
            loader()
    return engine


def reading_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines sorted top to bottom, and left to right within a row: a line whose vertical centre
    falls inside the first line of the current row belongs to that row."""
    rows: list[list[dict[str, Any]]] = []
    for line in sorted(lines, key=lambda ln: ln["box"][1] + ln["box"][3] / 2):
        _, y, _, h = line["box"]
        if rows:
            _, top, _, height = rows[-1][0]["box"]
            if top <= y + h / 2 <= top + height:
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda ln: ln["box"][0])]


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
