"""The Ray dashboard's job API: read a submission's status and stop it (fencing attempts), and read its
driver log (what a failed job leaves for debugging).

KubeRay can mark a RayJob Failed while its Ray job still runs, and in clusterSelector mode it never
stops that job; so before the next attempt (and when a job fails, is suspended or deleted) the
operator stops the old attempt through the dashboard and waits until Ray says it has stopped.

One bounded HTTP request per call and no retries here: the next reconcile is the retry. Failures
come back as results, never as exceptions.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

# Ray's JobStatus values after which the job's driver is gone.
TERMINAL_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
MAX_BODY_BYTES = 1024 * 1024
# A driver log is read as a stream and digested on the way (bounded memory); past this many bytes of
# answer the rest is left unread, and the saved excerpt says so.
MAX_LOG_BYTES = 64 * 1024 * 1024
LOG_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class RayJobState:
    """What the dashboard said about one submission."""

    status: str = ""   # Ray's JobStatus (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED); "" if none
    found: bool = True  # False: the dashboard has no such job (never submitted, or a new head)
    error: str = ""    # the dashboard could not be read: nothing is known

    @property
    def stopped(self) -> bool:
        """Known not to run: absent, or in a terminal state."""
        return not self.error and (not self.found or self.status in TERMINAL_STATUSES)


def dashboard_url(template: str, namespace: str, service: str) -> str:
    return template.format(namespace=namespace, service=service).rstrip("/")


def _job_url(base: str, submission_id: str) -> str:
    return f"{base}/api/jobs/{quote(submission_id, safe='')}"


async def get_job_state(session: aiohttp.ClientSession, base: str, submission_id: str,
                        timeout: float) -> RayJobState:
    """`GET /api/jobs/<id>`: the submission's status; 404 means no such job."""
    url = _job_url(base, submission_id)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status == 404:
                return RayJobState(found=False)
            if response.status != 200:
                return RayJobState(error=f"{url}: HTTP {response.status}")
            body = await response.content.read(MAX_BODY_BYTES + 1)
    except TimeoutError:
        return RayJobState(error=f"{url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return RayJobState(error=f"{url}: {type(exc).__name__}: {exc}")
    try:
        status = json.loads(body[:MAX_BODY_BYTES]).get("status")
    except (ValueError, AttributeError):
        return RayJobState(error=f"{url}: not a Ray job description")
    if not isinstance(status, str) or not status:
        return RayJobState(error=f"{url}: no status in the answer")
    return RayJobState(status=status.upper())


async def stop_job(session: aiohttp.ClientSession, base: str, submission_id: str, timeout: float) -> str:
    """`POST /api/jobs/<id>/stop`: ask Ray to stop the submission. Returns "" when asked (or when
    there is no such job), else why not."""
    url = _job_url(base, submission_id) + "/stop"
    try:
        async with session.post(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status in (200, 404):
                return ""
            return f"{url}: HTTP {response.status}"
    except TimeoutError:
        return f"{url}: no answer within {timeout:g}s"
    except aiohttp.ClientError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class LogRead:
    """How reading one submission's driver log went; its text went to the caller as it came."""

    found: bool = True  # False: the dashboard has no such job (never submitted, or a new head)
    error: str = ""     # nothing usable was read: the caller may try again
    cut: str = ""       # read, but not to the end: why


async def read_job_logs(session: aiohttp.ClientSession, base: str, submission_id: str, timeout: float,
                        on_text: Callable[[str], None], max_bytes: int = MAX_LOG_BYTES) -> LogRead:
    """`GET /api/jobs/<id>/logs`: Ray answers `{"logs": "<the whole driver log>"}`. The text is decoded
    out of the JSON as it streams in and handed to `on_text` piece by piece, so a log of any size
    costs bounded memory; after `max_bytes` the rest is left unread. One request, bounded by
    `timeout`; an answer cut short is an error (the caller's next try reads it whole)."""
    url = _job_url(base, submission_id) + "/logs"
    body = LogsBody()
    read, cut = 0, ""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status == 404:
                return LogRead(found=False, error=f"{url}: Ray has no job {submission_id} (HTTP 404)")
            if response.status != 200:
                return LogRead(error=f"{url}: HTTP {response.status}")
            async for chunk in response.content.iter_chunked(LOG_CHUNK_BYTES):
                read += len(chunk)
                on_text(body.feed(chunk))
                if body.done:
                    break
                if read >= max_bytes:
                    cut = f"only the first {max_bytes // 2**20} MiB of the log were read"
                    break
    except TimeoutError:
        return LogRead(error=f"{url}: not read within {timeout:g}s ({read} bytes came)")
    except aiohttp.ClientError as exc:
        return LogRead(error=f"{url}: {type(exc).__name__}: {exc}")
    except ValueError as exc:
        return LogRead(error=f"{url}: not a Ray job logs answer: {exc}")
    if not body.done and not cut:
        return LogRead(error=f"{url}: the answer ended early ({read} bytes)")
    return LogRead(cut=cut)


class LogsBody:
    """Ray's `{"logs": "<text>"}`, decoded incrementally: feed it bytes, get back the text they
    complete. Escapes split between chunks wait for the next one; a lone surrogate escape (a log that
    was not UTF-8) becomes U+FFFD."""

    _OPEN = re.compile(r'\s*\{\s*"logs"\s*:\s*"')
    _PLAIN = re.compile(r'[^"\\]+')
    _ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""
        self._open = False
        self.done = False

    def feed(self, chunk: bytes) -> str:
        if self.done:
            return ""
        text = self._pending + self._utf8.decode(chunk)
        if not self._open:
            match = self._OPEN.match(text)
            if match is None:
                if len(text) >= 64:
                    raise ValueError(f"it starts {text[:40]!r}")
                self._pending = text  # too short to tell yet
                return ""
            self._open, text = True, text[match.end():]
        out, self._pending = self._unescape(text)
        return out

    def _unescape(self, text: str) -> tuple[str, str]:
        """(decoded text, the undecided rest); sets `done` at the closing quote."""
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            plain = self._PLAIN.match(text, i)
            if plain:
                out.append(plain.group())
                i = plain.end()
                continue
            if text[i] == '"':
                self.done = True
                return "".join(out), ""
            if i + 1 >= n:
                break
            kind = text[i + 1]
            if kind != "u":
                if kind not in self._ESCAPES:
                    raise ValueError(f"bad escape \\{kind}")
                out.append(self._ESCAPES[kind])
                i += 2
                continue
            if i + 6 > n:
                break
            code = int(text[i + 2:i + 6], 16)
            if 0xD800 <= code < 0xDC00:  # a high surrogate: its pair is the next escape, or it is lone
                if i + 12 > n and text[i + 6:i + 8] in ("", "\\", "\\u"):
                    break
                low = text[i + 8:i + 12] if text[i + 6:i + 8] == "\\u" else ""
                if len(low) == 4 and 0xDC00 <= int(low, 16) < 0xE000:
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)))
                    i += 12
                    continue
                out.append("\ufffd")
            else:
                out.append("\ufffd" if 0xDC00 <= code < 0xE000 else chr(code))
            i += 6
        return "".join(out), text[i:]
