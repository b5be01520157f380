"""s3:// model URIs against a real S3-compatible server (moto's server mode): fetched once into the
cache, versioned by content, loaded by an extractor like any other model folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prism_pipeline import model_uris as models
from prism_pipeline.extractors.image_embedding import ImageEmbedding

from .conftest import image_item, spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[tuple[object, Path]]:
    """(boto3 client, model cache) with PRISM_MODEL_S3_ENDPOINT pointing at a fresh moto server."""
    import boto3
    from moto.server import ThreadedMotoServer

    nowhere = tmp_path_factory.mktemp("aws") / "none"
    cache = tmp_path_factory.mktemp("cache")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(nowhere),
                                "AWS_SHARED_CREDENTIALS_FILE": str(nowhere), models.ENV_CACHE: str(cache),
                                "PRISM_MODEL_S3_ENDPOINT": f"http://{host}:{port}"}.items():
                mp.setenv(name, value)
            client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
            client.create_bucket(Bucket="models")
            yield client, cache
    finally:
        server.stop()


def upload(client, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "models", f"{prefix}/{path.relative_to(folder).as_posix()}")


def test_folder_is_fetched_once_and_versioned_by_content(store, clip_uri, images):
    client, cache = store
    local = Path(clip_uri[len("file://"):])
    upload(client, local, "clip/v1")
    first = models.resolve("s3://models/clip/v1")
    assert first.path.is_relative_to(cache)
    assert sorted(p.name for p in first.path.iterdir()) == sorted(p.name for p in local.iterdir())
    assert first.version.startswith("s3://models/clip/v1@")
    stamp = (first.path / "config.json").stat().st_mtime_ns
    again = models.resolve("s3://models/clip/v1/")
    assert again == first and (again.path / "config.json").stat().st_mtime_ns == stamp  # not re-fetched

    ex = ImageEmbedding(spec("image-embedding", "s3://models/clip/v1"))
    assert ex.version == first.version and ex.output.size == 16
    ex.setup()
    [vector] = ex([image_item("i", images[0])])
    reference = ImageEmbedding(spec("image-embedding", clip_uri))
    reference.setup()
    np.testing.assert_allclose(vector, reference([image_item("i", images[0])])[0], rtol=1e-5, atol=1e-6)

    client.put_object(Bucket="models", Key="clip/v1/README.md", Body=b"retrained")
    changed = models.resolve("s3://models/clip/v1")
    assert changed.version != first.version and (changed.path / "README.md").read_bytes() == b"retrained"


def test_single_object(store):
    client, _ = store
    client.put_object(Bucket="models", Key="files/weights.bin", Body=b"\x00" * 10)
    resolved = models.resolve("s3://models/files/weights.bin")
    assert resolved.path.name == "weights.bin" and resolved.path.read_bytes() == b"\x00" * 10


@pytest.mark.parametrize(("uri", "message"), [
    ("s3://models/nothing/here", "no objects at s3://models/nothing/here"),
    ("s3://models", "'s3://models' names a whole bucket"),
    ("s3://no-such-bucket/x", "cannot list s3://no-such-bucket/x"),
])
def test_errors_name_the_field(store, uri, message):
    with pytest.raises(models.ModelError, match=f"extractor 'x' model: {message}"):
        models.resolve(uri, "extractor 'x' model")
