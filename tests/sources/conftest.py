"""A real S3-compatible server (moto's server mode) on 127.0.0.1 holding the sample media."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"
BUCKET = "media"
PREFIX = "campaign"


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory) -> Iterator[None]:
    """Dummy credentials, set only while the tests of the module run; no config files read."""
    from prism_pipeline import s3

    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_CONFIG_FILE": str(nowhere), "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        try:
            yield
        finally:
            s3.shared_filesystem.cache_clear()  # drop clients holding the dummy credentials


@pytest.fixture(scope="module")
def s3_endpoint(aws_env) -> Iterator[str]:
    """Endpoint URL of a moto S3 server whose bucket `media` holds examples/media under campaign/."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for path in sorted(MEDIA.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(MEDIA).as_posix()}")
        yield endpoint
    finally:
        server.stop()


@pytest.fixture()
def silent_endpoint(aws_env) -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers: a stalled object store."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
