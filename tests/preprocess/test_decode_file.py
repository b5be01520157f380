import hashlib

import pytest

from prism_pipeline.preprocess import ITEM_KEYS, MODALITIES, DecodeError, decode_file, modality_of

from .conftest import jpeg_bytes, preprocess, video_bytes, wav_bytes


@pytest.mark.parametrize("uri, modality", [
    ("/m/a.JPG", "image"), ("s3://b/k/a.webp", "image"), ("/m/v.mp4", "video"), ("/m/v.MOV", "video"),
    ("/m/s.wav", "audio"), ("gs://b/s.flac", "audio"), ("/m/d.pdf", "document"), ("/m/n.md", "document"),
    ("/m/n.txt", "document"), ("/m/archive.zip", None), ("/m/README", None), ("/m/.jpg", None),
    ("s3://b/dir.jpg/file", None),
])
def test_modality_of(uri, modality):
    assert modality_of(uri) == modality
    assert modality is None or modality in MODALITIES


@pytest.fixture(scope="module")
def one_of_each() -> dict[str, bytes]:
    return {
        "/m/photo.jpg": jpeg_bytes(64, 48),
        "/m/clip.mp4": video_bytes(2.0, fps=5),
        "/m/sound.wav": wav_bytes(1.0),
        "/m/notes.txt": b"Pasta needs salted water. " * 100,
    }


def test_every_item_has_exactly_the_item_keys_and_the_file_hash(one_of_each):
    seen = set()
    for uri, data in one_of_each.items():
        items = decode_file(uri, data, preprocess(document={"chunkChars": 500, "overlapChars": 50}))
        assert items
        for item in items:
            assert tuple(item) == ITEM_KEYS
            assert item["uri"] == uri and item["key"].startswith(uri)
            assert item["content_hash"] == hashlib.sha256(data).hexdigest()
            assert item["file_modality"] == modality_of(uri)
            assert item["modality"] in ("image", "audio", "text")
            assert (item["image"] is not None) == (item["modality"] == "image")
            assert (item["audio"] is not None) == (item["modality"] == "audio")
            assert (item["text"] is not None) == (item["modality"] == "text")
            seen.add((item["file_modality"], item["modality"]))
    assert seen == {("image", "image"), ("video", "image"), ("video", "audio"), ("audio", "audio"),
                    ("document", "text")}


def test_keys_are_stable_and_unique(one_of_each):
    for uri, data in one_of_each.items():
        first = [i["key"] for i in decode_file(uri, data, preprocess())]
        again = [i["key"] for i in decode_file(uri, data, preprocess())]
        assert first == again
        assert len(set(first)) == len(first)


@pytest.mark.parametrize("uri", ["/m/empty.jpg", "/m/empty.mp4", "/m/empty.wav", "/m/empty.pdf", "/m/empty.txt"])
def test_zero_byte_files_raise(uri):
    with pytest.raises(DecodeError, match=f"{uri}: zero-byte") as err:
        decode_file(uri, b"", preprocess())
    assert err.value.stage == "decode"


def test_unsupported_extension_raises_with_the_fix():
    with pytest.raises(DecodeError, match=r"/m/archive\.zip: unsupported file type.*spec\.source\.include"):
        decode_file("/m/archive.zip", b"PK\x03\x04", preprocess())


def test_sample_corrupt_file_raises(media):
    path = media / "photos" / "broken_truncated.jpg"
    with pytest.raises(DecodeError, match="broken_truncated.jpg"):
        decode_file(str(path), path.read_bytes(), preprocess())


def test_every_other_sample_file_decodes(media):
    texts = {}
    for path in sorted(p for p in media.rglob("*") if p.is_file() and p.name != "README.md"):
        if path.name == "broken_truncated.jpg":
            continue
        items = decode_file(str(path), path.read_bytes(), preprocess())
        assert items, path
        texts[path.name] = " ".join(i["text"] for i in items if i["text"])
    assert "Jupiter" in texts["solar_system.txt"]
    assert "spaghetti" in texts["cooking_pasta.md"]
    assert "nectar" in texts["honeybees.pdf"]
    assert "Vesuvius" in texts["volcanoes.pdf"]


def test_iter_items_is_lazy_and_fails_early_for_unusable_files():
    from prism_pipeline.preprocess import iter_items

    with pytest.raises(DecodeError, match="zero-byte"):
        iter_items("/m/empty.mp4", b"", preprocess())  # at the call, before any iteration
    with pytest.raises(DecodeError, match="not a readable media file"):
        iter_items("/m/junk.mp4", b"junk" * 100, preprocess())
    data = video_bytes(3.0, fps=5)
    items = iter_items("/m/clip.mp4", data, preprocess(video={"framesPerSecond": 1}))
    assert next(items)["key"] == "/m/clip.mp4#frame=0"
    rest = [i["key"] for i in items]
    assert rest[:2] == ["/m/clip.mp4#frame=5", "/m/clip.mp4#frame=10"]
    assert len(rest) == 3 and rest[2].startswith("/m/clip.mp4#t=0-3")  # AAC pads a few ms
