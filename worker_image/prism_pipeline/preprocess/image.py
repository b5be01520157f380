"""Images: decode once at the size the extractors need (JPEG draft mode), EXIF-upright, RGB."""

from __future__ import annotations

import io
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .items import DecodeError

# spec.preprocess.image.maxPixels' default: the size above which Pillow refuses to decode (2x its
# Image.MAX_IMAGE_PIXELS); the bound is checked here, from the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 178_956_970


def decode_image(data: bytes | BinaryIO, max_side: int, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """HxWx3 uint8 RGB, longest side <= max_side, orientation from EXIF applied. `data`: the bytes
    or a binary file (Pillow reads what it needs).

    Truncated files raise instead of yielding a half-grey image: Pillow only notices on load().
    Images with more than max_pixels source pixels raise before decoding (decompression bombs).
    """
    lenient, pillow_limit = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    # Another library in the process may have told Pillow to pad truncated files silently; for
    # this decode, a truncated file must fail. Pillow has only this global switch. Its own pixel
    # limit is replaced by max_pixels (checked in _decode), which a spec may set higher.
    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None
    try:
        return _decode(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, max_side, name,
                       max_pixels)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = lenient, pillow_limit


def check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    """The one pixel bound (spec.preprocess.image.maxPixels), for images and video frames alike."""
    if width * height > max_pixels:
        raise DecodeError(f"{name}: image too large: {width}x{height} = {width * height} pixels > "
                          f"spec.preprocess.image.maxPixels={max_pixels}; raise maxPixels or exclude the file")


def _decode(f: BinaryIO, max_side: int, name: str, max_pixels: int) -> np.ndarray:
    try:
        img = Image.open(f)
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
        raise DecodeError(f"{name}: not a readable image ({type(err).__name__}: {err})") from err
    check_pixels(*img.size, max_pixels, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _draft(img, max_side)
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = _to_rgb(img)
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8).copy()
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
