"""The one S3 client factory, for source data (sources.remote) and s3:// models (model_s3).

Both follow the same rules: credentials come from the environment as for any AWS SDK client
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, which the operator maps from spec.source.secretRef into
Ray pods); every request has a connect and a read timeout; retries are bounded, with exponential
backoff, at two levels: botocore's per request and s3fs's around those (throttling, dropped
connections). At most REQUEST_ATTEMPTS * FS_RETRIES tries per call. Only the endpoint, region and
read timeout differ between callers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

REQUEST_ATTEMPTS = 3       # botocore's bounded retries with backoff, per request
FS_RETRIES = 2             # s3fs's own bounded retry loop around those (its class default is 5)
CONNECT_TIMEOUT_S = 10.0   # reaching the endpoint; a longer read timeout does not stretch it


def filesystem(endpoint: str | None, region: str | None, read_timeout: float) -> Any:
    """A new s3fs filesystem. Raises ImportError without s3fs: callers name the spec field in it."""
    import s3fs

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint,
        client_kwargs={"region_name": region} if region else {},
        config_kwargs={
            "connect_timeout": min(read_timeout, CONNECT_TIMEOUT_S),
            "read_timeout": read_timeout,
            "retries": {"max_attempts": REQUEST_ATTEMPTS, "mode": "standard"},
        },
        skip_instance_cache=True,
    )
    fs.retries = FS_RETRIES
    return fs


@lru_cache(maxsize=16)
def shared_filesystem(endpoint: str | None, region: str | None, read_timeout: float) -> Any:
    """One filesystem per process and settings, for callers that make a request per file: it holds
    the connection pool. `shared_filesystem.cache_clear()` drops clients built with old credentials."""
    return filesystem(endpoint, region, read_timeout)
