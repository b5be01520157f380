"""Images: decode once at the size the extractors need (JPEG draft mode), EXIF-upright, RGB."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .items import DecodeError


def decode_image(data: bytes, max_side: int, name: str) -> np.ndarray:
    """HxWx3 uint8 RGB, longest side <= max_side, orientation from EXIF applied.

    Truncated files raise instead of yielding a half-grey image: Pillow only notices on load().
    """
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    # Another library in the process may have told Pillow to pad truncated files silently; for
    # this decode, a truncated file must fail. Pillow has only this global switch.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return _decode(data, max_side, name)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _decode(data: bytes, max_side: int, name: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x Image.MAX_IMAGE_PIXELS (89-179 MP) Pillow only warns: large camera
            # photos are legitimate, and JPEGs decode reduced anyway. Above 2x it raises (below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _draft(img, max_side)
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = _to_rgb(img)
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8).copy()
    except Image.DecompressionBombError as err:
        raise DecodeError(f"{name}: image too large to decode safely ({err})") from err
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
        raise DecodeError(f"{name}: not a readable image ({type(err).__name__}: {err})") from err


def _draft(img: Image.Image, max_side: int) -> None:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding, never below the target size."""
    if img.format != "JPEG":
        return
    w, h = img.size
    longest = max(w, h)
    if longest <= max_side:
        return
    scale = max_side / longest
    img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I;16"):
        # 16-bit greyscale (medical, scientific PNG/TIFF): convert("RGB") would clip, so scale.
        arr = np.asarray(img, dtype=np.uint16) // 257
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled down so the longest side is at most max_side (never up), each at least 1."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))
