"""Upload the sample media (examples/media) to the e2e cluster's MinIO through a port-forward."""

from __future__ import annotations

import base64
from pathlib import Path

import boto3
from botocore.config import Config

from .kubectl import Kubectl

BUCKET = "media"
# Bounded retries with botocore's backoff; no request waits longer than these.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})


def root_credentials(kubectl: Kubectl) -> tuple[str, str]:
    """MinIO's credentials, read from its Secret (e2e/manifests/minio.yaml) rather than repeated here."""
    secret = kubectl.in_namespace("minio").get("secret", "minio-root")
    if secret is None:
        raise RuntimeError("Secret minio/minio-root not found: install the stack with e2e/run.sh --setup-only")
    data = secret.get("data", {})
    return (base64.b64decode(data["MINIO_ROOT_USER"]).decode(),
            base64.b64decode(data["MINIO_ROOT_PASSWORD"]).decode())


def media_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md")


def upload_media(endpoint: str, credentials: tuple[str, str], root: Path) -> list[str]:
    """Empty the bucket, upload every sample file under its relative path; return their s3:// URIs."""
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=credentials[0],
                      aws_secret_access_key=credentials[1], region_name="us-east-1", config=CLIENT_CONFIG)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    uris = []
    for path in media_files(root):
        key = path.relative_to(root).as_posix()
        s3.upload_file(str(path), BUCKET, key)
        uris.append(f"s3://{BUCKET}/{key}")
    return uris
