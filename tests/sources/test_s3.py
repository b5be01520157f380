"""The S3 source against a real S3-compatible server (moto), no mocks."""

import pytest

from prism_api import Preprocess, SourceSpec
from prism_pipeline.preprocess import decode_file
from prism_pipeline.sources import ReadError, SourceError, list_files, read_bytes

from .conftest import MEDIA

SAMPLES = sorted(p.relative_to(MEDIA).as_posix() for p in MEDIA.rglob("*") if p.is_file())


def src(endpoint, uri="s3://media/campaign/", **kw) -> SourceSpec:
    return SourceSpec(uri=uri, endpoint=endpoint, region="us-east-1", **kw)


def test_lists_every_object_with_its_size(s3_endpoint):
    refs = list_files(src(s3_endpoint))
    assert [r.uri for r in refs] == [f"s3://media/campaign/{rel}" for rel in SAMPLES]
    assert [r.size for r in refs] == [(MEDIA / rel).stat().st_size for rel in SAMPLES]


@pytest.mark.parametrize("uri", ["s3://media/campaign", "s3://media/campaign/", "s3a://media/campaign"])
def test_prefix_with_or_without_slash(s3_endpoint, uri):
    assert len(list_files(src(s3_endpoint, uri))) == len(SAMPLES)


def test_include_exclude_globs(s3_endpoint):
    refs = list_files(src(s3_endpoint, include=["**/*.jpg", "docs/*.pdf"], exclude=["**/broken_*"]))
    assert [r.uri.removeprefix("s3://media/campaign/") for r in refs] == [
        "docs/honeybees.pdf", "docs/volcanoes.pdf", "photos/astronaut.jpg",
        "photos/astronaut_rotated_exif.jpg", "photos/coffee.jpg", "photos/shop_sign.jpg"]
    whole_bucket = list_files(src(s3_endpoint, "s3://media", include=["campaign/video/*"]))
    assert [r.uri for r in whole_bucket] == ["s3://media/campaign/video/astronaut_then_coffee.mp4"]


def test_reads_back_the_same_bytes_and_decodes_them(s3_endpoint):
    source = src(s3_endpoint, include=["photos/astronaut.jpg", "docs/honeybees.pdf"])
    refs = list_files(source)
    for ref in refs:
        rel = ref.uri.removeprefix("s3://media/campaign/")
        assert read_bytes(ref.uri, source) == (MEDIA / rel).read_bytes()
    items = decode_file(refs[0].uri, read_bytes(refs[0].uri, source), Preprocess())
    assert items[0]["key"] == "s3://media/campaign/docs/honeybees.pdf#page=1&chunk=0"


def test_empty_prefix_lists_nothing(s3_endpoint):
    assert list_files(src(s3_endpoint, "s3://media/no-such-prefix/")) == []


def test_missing_bucket_is_a_source_error(s3_endpoint):
    with pytest.raises(SourceError, match=r"spec\.source\.uri: 's3://no-bucket/x/' not found"):
        list_files(src(s3_endpoint, "s3://no-bucket/x/"))


def test_bucketless_uri_is_a_source_error(s3_endpoint):
    with pytest.raises(SourceError, match="names no bucket"):
        list_files(src(s3_endpoint, "s3:///x"))


def test_missing_object_and_oversized_object_are_read_errors(s3_endpoint):
    with pytest.raises(ReadError, match="nope.jpg: missing"):
        read_bytes("s3://media/campaign/nope.jpg", src(s3_endpoint))
    with pytest.raises(ReadError, match="astronaut.jpg: oversized"):
        read_bytes("s3://media/campaign/photos/astronaut.jpg", src(s3_endpoint, max_file_bytes=1000))
    # With the listed size, refused before any request: even a missing object reports "oversized".
    with pytest.raises(ReadError, match="ghost.jpg: oversized: 5000 bytes"):
        read_bytes("s3://media/campaign/ghost.jpg", src(s3_endpoint, max_file_bytes=1000), size=5000)


def test_unreachable_endpoint_names_the_endpoint_field(aws_env):
    with pytest.raises(SourceError, match=r"http://127\.0\.0\.1:9 is reachable \(spec\.source\.endpoint\)"):
        list_files(SourceSpec(uri="s3://media/x/", endpoint="http://127.0.0.1:9", read_timeout_seconds=2))


def test_stalled_server_read_times_out(silent_endpoint):
    source = SourceSpec(uri="s3://media/", endpoint=silent_endpoint, read_timeout_seconds=0.5)
    with pytest.raises(ReadError, match=r"timed out after 0\.5s"):
        read_bytes("s3://media/photos/astronaut.jpg", source)


def test_stalled_server_listing_fails_instead_of_hanging(silent_endpoint):
    source = SourceSpec(uri="s3://media/", endpoint=silent_endpoint, read_timeout_seconds=0.5)
    with pytest.raises(SourceError, match="cannot list"):
        list_files(source)


def test_empty_objects_folder_markers_and_hidden_keys(s3_endpoint):
    import boto3

    from prism_pipeline.preprocess import DecodeError

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="edge")
    for key, body in {"in/empty.jpg": b"", "in/folder/": b"", "in/.hidden/x.jpg": b"x",
                      "in/.DS_Store": b"x", "in/ok.txt": b"fine"}.items():
        s3.put_object(Bucket="edge", Key=key, Body=body)
    source = src(s3_endpoint, "s3://edge/in/")
    refs = list_files(source)
    assert [(r.uri, r.size) for r in refs] == [("s3://edge/in/empty.jpg", 0), ("s3://edge/in/ok.txt", 4)]
    empty = read_bytes("s3://edge/in/empty.jpg", source)  # S3 answers 416 to a range on 0 bytes
    assert empty == b""
    with pytest.raises(DecodeError, match="zero-byte"):
        decode_file("s3://edge/in/empty.jpg", empty, Preprocess())


def test_one_s3_factory_for_data_and_models(aws_env, monkeypatch):
    """Source data and s3:// models get their clients from prism_pipeline.s3: same bounded retries,
    same timeouts; only endpoint, region and read timeout come from each caller."""
    from prism_pipeline import model_s3, s3
    from prism_pipeline.sources import remote

    monkeypatch.setenv("PRISM_MODEL_S3_ENDPOINT", "http://127.0.0.1:9")
    data = remote.filesystem("s3", SourceSpec(uri="s3://b/", endpoint="http://127.0.0.1:9", region="eu-west-1",
                                              read_timeout_seconds=30))
    assert data is s3.shared_filesystem("http://127.0.0.1:9", "eu-west-1", 30.0)  # one pool per process
    model = model_s3.filesystem()
    assert model is not data  # a model fetch reads the credentials afresh
    for fs, read_timeout in ((data, 30.0), (model, model_s3.REQUEST_TIMEOUT_S)):
        assert fs.retries == s3.FS_RETRIES
        assert fs.config_kwargs == {"connect_timeout": s3.CONNECT_TIMEOUT_S, "read_timeout": read_timeout,
                                    "retries": {"max_attempts": s3.REQUEST_ATTEMPTS, "mode": "standard"}}
    assert model.client_kwargs == {} and data.client_kwargs == {"region_name": "eu-west-1"}
