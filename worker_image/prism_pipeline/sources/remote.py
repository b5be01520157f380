"""s3:// and gs:// through fsspec (s3fs, gcsfs): bounded retries and explicit timeouts.

S3 clients come from prism_pipeline.s3, the factory s3:// models use too."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import BinaryIO

from prism_api import SourceSpec
from prism_pipeline import s3

from .refs import READ_CHUNK, FileRef, ReadError, SourceError

# One listing page is small: a stalled store should fail the listing in minutes, not hours.
_LIST_REQUEST_TIMEOUT = 30.0


# Keys per S3 ListObjectsV2 page (the service's maximum).
S3_PAGE_KEYS = 1000


def iter_remote(scheme: str, path: str, source: SourceSpec, match: Callable[[str], bool]) -> Iterator[FileRef]:
    """The objects under `path` that `match`, as they are listed. s3://: one ListObjectsV2 page at a
    time (1,000 keys), each page's objects yielded before the next page is asked for, so the first
    files flow after one request whatever the bucket's size. gs://: gcsfs has no public page
    iterator, so the listing is read whole first (then yielded)."""
    if not path or path.startswith("/"):
        raise SourceError(f"spec.source.uri: {source.uri!r} names no bucket; use {scheme}://bucket/prefix/")
    fs = filesystem(scheme, source, min(source.read_timeout_seconds, _LIST_REQUEST_TIMEOUT))
    fs.invalidate_cache()  # a long-lived driver must see objects written since the last listing
    entries = _s3_pages(fs, path) if scheme == "s3" else _gcs_entries(fs, path)
    try:
        for key, size, fingerprint in entries:
            if key.endswith("/"):
                continue  # "folder" marker objects hold no data
            rel = key[len(path) + 1:] if key.startswith(path + "/") else key.rsplit("/", 1)[-1]
            if match(rel) and not any(part.startswith(".") for part in rel.split("/")):
                yield FileRef(f"{scheme}://{key}", size, fingerprint)
    except SourceError:
        raise
    except FileNotFoundError as err:
        raise SourceError(f"spec.source.uri: {source.uri!r} not found ({err}); check the bucket name") from err
    except PermissionError as err:
        raise SourceError(f"spec.source.uri: access denied listing {source.uri!r} ({err}); give the "
                          "credentials in spec.source.secretRef list/read permission on it") from err
    except Exception as err:  # botocore/aiohttp errors carry no common base class
        raise SourceError(_remote_hint(scheme, source, f"cannot list {source.uri!r}: {err}")) from err


def _s3_pages(fs, path: str) -> Iterator[tuple[str, int, str]]:
    """(key, size, fingerprint) page by page: ListObjectsV2 through s3fs's client (its timeouts and
    bounded retries). The fingerprint is the ETag. `path` names a prefix or a single object."""
    from fsspec.asyn import sync

    bucket, _, prefix = path.partition("/")
    token = None
    found = False
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix + "/" if prefix else "", "MaxKeys": S3_PAGE_KEYS}
        if token:
            kwargs["ContinuationToken"] = token
        page = sync(fs.loop, fs._call_s3, "list_objects_v2", **kwargs)
        for obj in page.get("Contents", []):
            found = True
            yield f"{bucket}/{obj['Key']}", int(obj.get("Size") or 0), "etag:" + str(obj.get("ETag", "")).strip('"')
        token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        if not token:
            break
    if not found and prefix:  # the uri may name one object rather than a prefix
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return
        if info.get("type") != "directory":
            yield path, int(info.get("size") or 0), "etag:" + str(info.get("ETag", "")).strip('"')


def _gcs_entries(fs, path: str) -> Iterator[tuple[str, int, str]]:
    """(key, size, fingerprint) of every object: gcsfs's find, read whole. The fingerprint is the
    object's generation (a new one on every write), else its md5."""
    for key, info in fs.find(path, detail=True).items():
        if info.get("type") == "directory":
            continue
        version = info.get("generation") or info.get("md5Hash") or ""
        yield key, int(info.get("size") or 0), f"gen:{version}" if version else ""


def _remote_hint(scheme: str, source: SourceSpec, what: str) -> str:
    if scheme == "s3":
        where = f"endpoint {source.endpoint}" if source.endpoint else "AWS S3"
        return (f"spec.source.uri: {what}; check that {where} is reachable (spec.source.endpoint), "
                "spec.source.region, and the credentials in spec.source.secretRef "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    return (f"spec.source.uri: {what}; check the bucket and the credentials in spec.source.secretRef "
            "(GOOGLE_APPLICATION_CREDENTIALS)")


def read_remote(fs, path: str, uri: str, limit: int, sink: Callable[[bytes], None]) -> BinaryIO:
    """The object spooled to an anonymous temporary file, left at its start: fetched in ranged GETs
    of READ_CHUNK bytes, each passed to `sink` (the hash) and written out before the next, so memory
    holds one chunk whatever the object's size. An object larger than `limit` is cut at limit + 1
    bytes (then refused as oversized by the caller)."""
    spool = tempfile.TemporaryFile(prefix="prism-read-")  # noqa: SIM115 - the caller owns it
    try:
        total = 0
        while total <= limit:
            want = min(READ_CHUNK, limit + 1 - total)
            try:
                chunk = fs.cat_file(path, start=total, end=total + want)
            except OSError as err:
                if "range" not in str(err).lower():
                    raise
                # S3 answers 416 to a range at or past the end: an empty object, or one whose size
                # is a multiple of the chunk. Nothing more to read.
                break
            spool.write(chunk)
            sink(chunk)
            total += len(chunk)
            if len(chunk) < want:
                break
        spool.seek(0)
        return spool
    except BaseException as err:
        spool.close()
        if isinstance(err, FileNotFoundError):
            raise ReadError(f"{uri}: missing (deleted after listing?)") from err
        if isinstance(err, PermissionError):
            raise ReadError(f"{uri}: access denied; check the credentials in spec.source.secretRef") from err
        if isinstance(err, Exception) and not isinstance(err, ReadError):
            raise ReadError(f"{uri}: {type(err).__name__}: {err}") from err
        raise


def filesystem(scheme: str, source: SourceSpec, request_timeout: float | None = None):
    """The process's shared filesystem for the scheme and the source's settings."""
    timeout = float(request_timeout or source.read_timeout_seconds)
    if scheme == "s3":
        try:
            return s3.shared_filesystem(source.endpoint, source.region, timeout)
        except ImportError as err:
            raise SourceError("spec.source.uri: s3:// needs the 's3fs' package; pip install s3fs") from err
    return gcs_filesystem(timeout)


@lru_cache(maxsize=16)
def gcs_filesystem(timeout: float):
    """One gcsfs filesystem per process and timeout: it holds the connection pool."""
    try:
        import gcsfs
    except ImportError as err:
        raise SourceError("spec.source.uri: gs:// needs the 'gcsfs' package, which is not installed "
                          "in this image; pip install gcsfs") from err
    import aiohttp  # gcsfs's HTTP client

    connect = min(timeout, s3.CONNECT_TIMEOUT_S)
    return gcsfs.GCSFileSystem(requests_timeout=aiohttp.ClientTimeout(total=timeout, connect=connect),
                               skip_instance_cache=True)
