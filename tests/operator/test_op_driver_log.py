"""Reading a driver log through the Ray dashboard (`GET /api/jobs/<id>/logs`, answered as Ray 2.60's
job_head answers it: `json.dumps({"logs": text})`) from a real local HTTP server: streamed and decoded
piece by piece, bounded in bytes and time, and every failure a result, never an exception."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from prism_operator.dashboard_client import LogsBody, read_job_logs

from .conftest import free_port, serving

TEXT = "line one\n\x1b[36m(pid=1)\x1b[0m café ☕ 😀 \"quoted\" back\\slash\ttab\nPRISM_FAILURE {\"uri\": \"a\"}\n"
BIG = "".join(f"{i:08d} some driver output that goes on for a while\n" for i in range(100_000))  # ~5 MB


@pytest.fixture
async def dashboard():
    async def logs(request: web.Request) -> web.StreamResponse:
        submission = request.match_info["id"]
        if submission == "gone":
            return web.Response(status=404, text=f"Job {submission} does not exist")
        if submission == "broken":
            return web.Response(status=500, text="Traceback ...")
        if submission == "slow":
            await asyncio.sleep(2)
        if submission == "garbage":
            return web.Response(text="<html>a proxy's error page</html>" * 4, content_type="text/html")
        if submission == "short":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"logs": "the answer stops here')
            await response.write_eof()
            return response
        text = BIG if submission == "big" else TEXT
        return web.Response(text=json.dumps({"logs": text}), content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/jobs/{id}/logs", logs)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


async def read(base: str, submission: str, timeout: float = 5, **kw):
    pieces: list[str] = []
    async with aiohttp.ClientSession() as session:
        result = await read_job_logs(session, base, submission, timeout, pieces.append, **kw)
    return result, "".join(pieces)


async def test_the_log_text_comes_out_of_rays_json(dashboard):
    result, text = await read(dashboard, "campaign-1a2b3-a1")
    assert (result.found, result.error, result.cut) == (True, "", "")
    assert text == TEXT


async def test_a_big_log_streams_and_is_read_up_to_its_bound(dashboard):
    result, text = await read(dashboard, "big")
    assert result.error == "" and text == BIG
    result, text = await read(dashboard, "big", max_bytes=1024 * 1024)
    assert result.error == "" and "first 1 MiB" in result.cut
    assert BIG.startswith(text) and 1024 * 1024 - 100_000 < len(text) < len(BIG)


async def test_what_goes_wrong_is_a_result(dashboard):
    gone, _ = await read(dashboard, "gone")
    assert not gone.found and "HTTP 404" in gone.error
    broken, _ = await read(dashboard, "broken")
    assert broken.found and "HTTP 500" in broken.error
    slow, _ = await read(dashboard, "slow", timeout=0.3)
    assert "not read within 0.3s" in slow.error
    garbage, _ = await read(dashboard, "garbage")
    assert "not a Ray job logs answer" in garbage.error
    short, _ = await read(dashboard, "short")
    assert "ended early" in short.error
    refused, _ = await read(f"http://127.0.0.1:{free_port()}", "x")
    assert "ClientConnectorError" in refused.error


@pytest.mark.parametrize("size", [1, 2, 5, 13])
def test_escapes_split_between_chunks_wait_for_the_next(size):
    text = 'a\\"b\n\u00e9\U0001F600\ud83d\x00 end'  # a lone high surrogate: a log that was not UTF-8
    body = json.dumps({"logs": text}).encode()
    decoder, out = LogsBody(), []
    for i in range(0, len(body), size):
        out.append(decoder.feed(body[i:i + size]))
    assert decoder.done and "".join(out) == text.replace("\ud83d", "\ufffd")
