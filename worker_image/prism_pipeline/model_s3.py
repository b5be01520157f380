"""s3:// model URIs: a model folder (or file) in an S3-compatible store, copied once into the model
cache of each machine that needs it.

The cache folder is named by a digest of the objects' keys, sizes and ETags, so a model that changes
under the same URI gets a new folder and a new version (and incremental runs redo their files),
while an unchanged one is never fetched twice. A download lands in a temporary folder and is renamed
into place, so actors starting together on one node never see half a model.

Endpoint and credentials come from the environment, as for any AWS SDK client: AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY (the operator maps spec.source.secretRef's keys into Ray pods) and
PRISM_MODEL_S3_ENDPOINT, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, for MinIO and friends. The
client comes from prism_pipeline.s3, the factory the source uses: same retries, timeouts, credentials.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from prism_pipeline import s3

REQUEST_TIMEOUT_S = 60.0   # per HTTP request; a stalled store fails the fetch instead of hanging


def endpoint() -> str | None:
    for var in ("PRISM_MODEL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def filesystem() -> Any:
    """A fresh client per fetch (a model is fetched once per machine): credentials read now."""
    return s3.filesystem(endpoint(), None, REQUEST_TIMEOUT_S)


def fetch(uri: str, cache: Path, field: str, error: type[Exception]) -> tuple[Path, str]:
    """(local path, version) of the model at `uri` (s3://bucket/key-or-prefix), fetching it into
    `cache` if needed. Raises `error` with a message naming `field` and the fix."""
    where = uri[len("s3://"):].strip("/")
    if "/" not in where:
        raise error(f"{field}: {uri!r} names a whole bucket; point it at the model's folder "
                    "(s3://bucket/path/to/model)")
    try:
        fs = filesystem()
    except ImportError as err:
        raise error(f"{field}: s3:// models need the 's3fs' package in the worker image") from err
    try:
        objects = _objects(fs, where)
    except Exception as err:  # botocore/aiohttp raise many types; the message says which
        raise error(f"{field}: cannot list {uri} ({type(err).__name__}: {err}); check the credentials "
                    f"and the endpoint ({endpoint() or 'AWS S3'}: set PRISM_MODEL_S3_ENDPOINT for MinIO)") from err
    if not objects:
        raise error(f"{field}: no objects at {uri}; upload the model folder there or fix the URI")
    digest = hashlib.sha256("\n".join(f"{rel}:{size}:{etag}" for rel, (_, size, etag) in sorted(objects.items()))
                            .encode()).hexdigest()[:12]
    single = list(objects) == [""]
    target = cache / "s3" / where / digest
    if not target.exists():
        _download(fs, objects, target, single, uri, field, error)
    path = target / Path(where).name if single else target
    return path, f"s3://{where}@{digest}"


def _objects(fs: Any, where: str) -> dict[str, tuple[str, int, str]]:
    """relative path -> (object path, size, etag) of every object under the prefix; the key
    itself (relative path "") when the URI names one object."""
    found = fs.find(where, detail=True)
    objects = {}
    for path, info in found.items():
        if info.get("type") == "directory" or path.endswith("/"):
            continue
        rel = "" if path == where else path[len(where):].lstrip("/")
        objects[rel] = (path, int(info.get("size") or 0), str(info.get("ETag") or info.get("etag") or ""))
    return objects


def _download(fs: Any, objects: dict, target: Path, single: bool, uri: str, field: str,
              error: type[Exception]) -> None:
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        for rel, (path, _, _) in objects.items():
            local = staging / (Path(path).name if single else rel)
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(local))
        try:
            staging.rename(target)
        except OSError:
            if not target.exists():  # lost a race with another actor: theirs is complete, keep it
                raise
    except Exception as err:
        raise error(f"{field}: fetching {uri} into the model cache {target.parent} failed "
                    f"({type(err).__name__}: {err})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
