import numpy as np
import pytest

from prism_pipeline.preprocess import DecodeError, decode_file

from .conftest import jpeg_bytes, preprocess


def test_large_jpeg_is_scaled_to_max_side_keeping_aspect():
    [item] = decode_file("/m/big.jpg", jpeg_bytes(2000, 1000), preprocess(image={"maxSide": 256}))
    assert item["image"].shape == (128, 256, 3)
    assert item["image"].dtype == np.uint8


def test_small_image_is_never_upscaled():
    [item] = decode_file("/m/small.jpg", jpeg_bytes(40, 30), preprocess(image={"maxSide": 256}))
    assert item["image"].shape == (30, 40, 3)


@pytest.mark.parametrize("orientation, shape", [(1, (30, 80, 3)), (6, (80, 30, 3)), (8, (80, 30, 3)),
                                                (3, (30, 80, 3))])
def test_exif_orientation_is_applied(orientation, shape):
    [item] = decode_file("/m/o.jpg", jpeg_bytes(80, 30, exif_orientation=orientation), preprocess())
    img = item["image"].astype(int)
    assert img.shape == shape
    # The stored top-left corner is dark in red and green; find where it ends up after transposing.
    corners = {"tl": img[0, 0], "tr": img[0, -1], "bl": img[-1, 0], "br": img[-1, -1]}
    darkest = min(corners, key=lambda k: corners[k][0] + corners[k][1])
    assert darkest == {1: "tl", 6: "tr", 8: "bl", 3: "br"}[orientation]


def test_png_with_alpha_becomes_rgb():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (20, 10), (255, 0, 0, 0)).save(buf, "PNG")
    [item] = decode_file("/m/a.png", buf.getvalue(), preprocess())
    assert item["image"].shape == (10, 20, 3)
    assert item["image"][0, 0].tolist() == [255, 255, 255]  # transparent pixels on white


def test_truncated_jpeg_raises_instead_of_returning_a_grey_half():
    data = jpeg_bytes(400, 300)
    with pytest.raises(DecodeError, match="half.jpg.*truncated"):
        decode_file("/m/half.jpg", data[: len(data) // 2], preprocess())


def test_truncated_jpeg_raises_even_if_someone_enabled_lenient_loading(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg_bytes(400, 300)
    with pytest.raises(DecodeError):
        decode_file("/m/half.jpg", data[: len(data) // 2], preprocess())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the other library's setting is left as it was


def test_garbage_with_an_image_extension_raises():
    with pytest.raises(DecodeError, match="junk.png"):
        decode_file("/m/junk.png", b"this is not a png" * 10, preprocess())


def test_sample_photos(media):
    pre = preprocess(image={"maxSide": 256})
    upright = decode_file("x.jpg", (media / "photos" / "astronaut.jpg").read_bytes(), pre)[0]["image"]
    rotated = decode_file("y.jpg", (media / "photos" / "astronaut_rotated_exif.jpg").read_bytes(), pre)[0]["image"]
    assert upright.shape == rotated.shape == (256, 256, 3)
    assert np.abs(upright.astype(int) - rotated.astype(int)).mean() < 8  # same picture, upright


def test_png_and_16_bit_greyscale_are_scaled_and_made_rgb():
    import io

    from PIL import Image

    grey16 = Image.fromarray((np.arange(300 * 200, dtype=np.uint16).reshape(200, 300) % 4096) * 16)
    buf = io.BytesIO()
    grey16.save(buf, "PNG")
    [item] = decode_file("/m/g.png", buf.getvalue(), preprocess(image={"maxSide": 150}))
    img = item["image"]
    assert img.shape == (100, 150, 3)
    assert (img[..., 0] == img[..., 1]).all()
    assert 100 < img.mean() < 160  # scaled down from 16 bits (clipping would saturate almost all to 255)


def test_decompression_bomb_is_refused_before_decoding():
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A 20000x20000 RGB PNG header (400 megapixels, 1.2 GB decoded) with almost no data.
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(DecodeError, match="bomb.png: image too large"):
        decode_file("/m/bomb.png", bomb, preprocess())
