"""The progress client against real local HTTP servers: a reading, a slow endpoint, a refused
connection, an error status and garbage all come back as results, never as exceptions."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from prism_operator.progress_client import fetch_progress, progress_url

from .conftest import free_port, progress_text


@pytest.fixture
async def endpoint():
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=progress_text(total=5, done=2, items={"text": 7}))

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def garbage(_: web.Request) -> web.Response:
        return web.Response(text="prism_files_total{{{ 3\n")

    app = web.Application()
    for path, handler in (("/metrics", metrics), ("/slow", slow), ("/broken", broken), ("/garbage", garbage)):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


async def test_fetch_results(endpoint):
    async with aiohttp.ClientSession() as session:
        ok = await fetch_progress(session, f"{endpoint}/metrics", timeout=2)
        assert ok.error == "" and ok.snapshot.files_done == 2 and ok.snapshot.items == {"text": 7}

        slow = await fetch_progress(session, f"{endpoint}/slow", timeout=0.3)
        assert slow.snapshot is None and "no answer within 0.3s" in slow.error

        broken = await fetch_progress(session, f"{endpoint}/broken", timeout=2)
        assert broken.snapshot is None and "HTTP 500" in broken.error

        garbage = await fetch_progress(session, f"{endpoint}/garbage", timeout=2)
        assert garbage.snapshot is None and "invalid Prometheus text" in garbage.error

        refused = await fetch_progress(session, f"http://127.0.0.1:{free_port()}/metrics", timeout=2)
        assert refused.snapshot is None and "ClientConnectorError" in refused.error


def test_progress_url():
    assert progress_url("http://{service}.{namespace}.svc:{port}{path}", "media", "c-head-svc") == \
        "http://c-head-svc.media.svc:9090/metrics"
