"""Bounded retries for Qdrant requests: every sink call goes through `call_with_retries`.

A request that fails is retried a bounded number of times with exponential backoff and jitter;
client errors (a bad request, a wrong vector size) fail at once, since they would fail again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

ATTEMPTS = 5
BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


class SinkWriteError(Exception):
    """Qdrant refused a request (a batch, a record, a lookup) after every retry."""


def call_with_retries(call: Callable[[], Any], what: str, attempts: int = ATTEMPTS,
                      backoff_s: float = BACKOFF_S, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call `call` (one Qdrant request) until it succeeds, at most `attempts` times, backing off
    0.5, 1, 2, 4 s (+-25%); return its result."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:
            if attempt == attempts or not _retryable(err):
                raise SinkWriteError(f"{what}: {type(err).__name__}: {err} (after {attempt} attempt(s))") from err
            delay = min(MAX_BACKOFF_S, backoff_s * 2 ** (attempt - 1))
            sleep(delay * random.uniform(0.75, 1.25))


def _retryable(err: Exception) -> bool:
    """Client errors (a bad request, a wrong vector size) will fail again; transport errors and
    5xx/429 responses may not."""
    status = getattr(err, "status_code", None)
    return status is None or status == 429 or status >= 500
