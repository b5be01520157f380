"""The e2e suite's helpers against what runs here: MinIO uploads against moto's S3 server, and
kubectl/port-forward handling against a stand-in `kubectl` script (no API server exists here)."""

from __future__ import annotations

import stat
import textwrap

import boto3
import pytest

from e2e.support.kubectl import Kubectl, KubectlError
from e2e.support.minio import BUCKET, media_files, upload_media
from e2e.support.portforward import PortForward, PortForwardError

from .repo_files import ROOT


@pytest.fixture
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_upload_media_replaces_the_bucket_contents(s3_endpoint, tmp_path):
    media = tmp_path / "media"
    (media / "docs").mkdir(parents=True)
    (media / "docs" / "a.txt").write_text("alpha")
    (media / "b.jpg").write_bytes(b"\xff\xd8")
    (media / "README.md").write_text("not media")
    credentials = ("testing", "testing")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="stale/old.txt", Body=b"from a former run")

    uris = upload_media(s3_endpoint, credentials, media)

    assert uris == ["s3://media/b.jpg", "s3://media/docs/a.txt"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["b.jpg", "docs/a.txt"]
    assert s3.get_object(Bucket=BUCKET, Key="docs/a.txt")["Body"].read() == b"alpha"
    assert upload_media(s3_endpoint, credentials, media) == uris  # idempotent on a rerun


def test_the_sample_media_exists():
    files = media_files(ROOT / "examples" / "media")
    assert any(p.name == "broken_truncated.jpg" for p in files), "test_success expects the corrupt JPEG"


def fake_kubectl(tmp_path, body: str) -> str:
    """A stand-in for kubectl: a shell script whose behaviour the test writes."""
    path = tmp_path / "kubectl"
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_get_returns_none_only_for_not_found(tmp_path):
    binary = fake_kubectl(tmp_path, """\
        case "$*" in
          *missing*) echo 'Error from server (NotFound): rayclusters.ray.io "missing" not found' >&2; exit 1 ;;
          *broken*) echo 'Unable to connect to the server: dial tcp: connection refused' >&2; exit 1 ;;
          *) echo '{"kind": "RayCluster", "metadata": {"name": "found"}}' ;;
        esac
    """)
    kc = Kubectl("/dev/null", "prism-e2e", binary=binary)
    assert kc.get("raycluster", "found")["metadata"]["name"] == "found"
    assert kc.get("raycluster", "missing") is None
    with pytest.raises(KubectlError, match="connection refused"):
        kc.get("raycluster", "broken")
    assert "--request-timeout=30s --namespace prism-e2e get raycluster found -o json" in kc.log[0]


def test_a_hanging_kubectl_is_cut_off(tmp_path):
    kc = Kubectl("/dev/null", binary=fake_kubectl(tmp_path, "sleep 30\n"))
    with pytest.raises(KubectlError, match="did not finish within 1s"):
        kc.run("get", "pods", timeout=1)


def test_port_forward_reads_the_local_port_and_stops(tmp_path):
    binary = fake_kubectl(tmp_path, """\
        echo "Forwarding from 127.0.0.1:43210 -> 6333"
        exec sleep 60
    """)
    forward = PortForward(Kubectl("/dev/null", binary=binary), "qdrant", "qdrant", 6333)
    assert forward.url() == "http://127.0.0.1:43210"
    proc = forward.proc
    forward.stop()
    assert proc.poll() is not None and forward.proc is None


def test_port_forward_that_cannot_start_says_why(tmp_path):
    binary = fake_kubectl(tmp_path, """\
        echo 'error: services "qdrant" not found'
        exit 1
    """)
    with pytest.raises(PortForwardError, match=r'qdrant/svc/qdrant:6333 did not start.*services "qdrant" not found'):
        PortForward(Kubectl("/dev/null", binary=binary), "qdrant", "qdrant", 6333).start()
