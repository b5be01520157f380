"""The progress and dashboard clients against real local HTTP servers: a reading, a slow endpoint, a
refused connection, an error status and garbage all come back as results, never as exceptions."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from prism_api.progress_report import ReportIdentity
from prism_operator.dashboard_client import dashboard_url, get_job_state, stop_job
from prism_operator.progress_scraper import fetch_progress, progress_url

from .conftest import free_port, progress_text, serving


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

    async def other_job(_: web.Request) -> web.Response:
        return web.Response(text=progress_text(total=5, done=2, job="someone-else"))

    async def ray_job(request: web.Request) -> web.Response:
        submission = request.match_info["id"]
        if submission == "gone":
            return web.Response(status=404, text=f"Job {submission} does not exist")
        if submission == "odd":
            return web.json_response({"no": "status"})
        return web.json_response({"submission_id": submission, "status": "RUNNING"})

    async def stop(request: web.Request) -> web.Response:
        if request.match_info["id"] == "gone":
            return web.Response(status=404)
        return web.json_response({"stopped": True})

    app = web.Application()
    for path, handler in (("/metrics", metrics), ("/slow", slow), ("/broken", broken), ("/garbage", garbage),
                          ("/other", other_job), ("/dash/api/jobs/{id}", ray_job), ("/slow/api/jobs/{id}", slow),
                          ("/broken/api/jobs/{id}", broken)):
        app.router.add_get(path, handler)
    app.router.add_post("/dash/api/jobs/{id}/stop", stop)
    app.router.add_post("/broken/api/jobs/{id}/stop", broken)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


ME = ReportIdentity("campaign", "media", 1)


async def test_fetch_results(endpoint):
    async with aiohttp.ClientSession() as session:
        ok = await fetch_progress(session, f"{endpoint}/metrics", timeout=2, identity=ME)
        assert ok.error == "" and ok.report.counts.files_done == 2 and ok.report.counts.items == {"text": 7}

        slow = await fetch_progress(session, f"{endpoint}/slow", timeout=0.3, identity=ME)
        assert slow.report is None and "no answer within 0.3s" in slow.error

        broken = await fetch_progress(session, f"{endpoint}/broken", timeout=2, identity=ME)
        assert broken.report is None and "HTTP 500" in broken.error

        garbage = await fetch_progress(session, f"{endpoint}/garbage", timeout=2, identity=ME)
        assert garbage.report is None and "invalid Prometheus text" in garbage.error

        other = await fetch_progress(session, f"{endpoint}/other", timeout=2, identity=ME)
        assert other.report is None and "no samples of job media/campaign attempt 1" in other.error

        refused = await fetch_progress(session, f"http://127.0.0.1:{free_port()}/metrics", timeout=2, identity=ME)
        assert refused.report is None and "ClientConnectorError" in refused.error


async def test_dashboard_results(endpoint):
    async with aiohttp.ClientSession() as session:
        running = await get_job_state(session, f"{endpoint}/dash", "c-a1", timeout=2)
        assert (running.status, running.found, running.error, running.stopped) == ("RUNNING", True, "", False)

        gone = await get_job_state(session, f"{endpoint}/dash", "gone", timeout=2)
        assert (gone.found, gone.error, gone.stopped) == (False, "", True)

        odd = await get_job_state(session, f"{endpoint}/dash", "odd", timeout=2)
        assert "no status" in odd.error and not odd.stopped

        slow = await get_job_state(session, f"{endpoint}/slow", "c-a1", timeout=0.3)
        assert "no answer within 0.3s" in slow.error and not slow.stopped

        broken = await get_job_state(session, f"{endpoint}/broken", "c-a1", timeout=2)
        assert "HTTP 500" in broken.error and not broken.stopped

        refused = await get_job_state(session, f"http://127.0.0.1:{free_port()}", "c-a1", timeout=2)
        assert "ClientConnectorError" in refused.error and not refused.stopped

        assert await stop_job(session, f"{endpoint}/dash", "c-a1", timeout=2) == ""
        assert await stop_job(session, f"{endpoint}/dash", "gone", timeout=2) == ""  # nothing to stop
        assert "HTTP 500" in await stop_job(session, f"{endpoint}/broken", "c-a1", timeout=2)
        assert "ClientConnectorError" in await stop_job(session, f"http://127.0.0.1:{free_port()}", "x", timeout=2)


def test_dashboard_url():
    assert dashboard_url("http://{service}.{namespace}.svc:8265", "media", "c-head-svc") == \
        "http://c-head-svc.media.svc:8265"
    assert dashboard_url("http://proxy/{namespace}/{service}/", "media", "c-head-svc") == "http://proxy/media/c-head-svc"


def test_progress_url():
    assert progress_url("http://{service}.{namespace}.svc:{port}{path}", "media", "c-head-svc") == \
        "http://c-head-svc.media.svc:9090/metrics"
