"""The two ways the operator is started, as real processes against the emulated API server:
`prism operator` and the image's ENTRYPOINT (`kopf run -m prism_operator.kopf_main ...`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from .conftest import child_names, free_port, job_manifest, wait_for
from .test_op_manifests import dockerfile_entrypoint

BIN = Path(sys.executable).parent


def commands(liveness: str) -> dict[str, list[str]]:
    image = [a if not a.startswith("--liveness=") else f"--liveness={liveness}" for a in dockerfile_entrypoint()]
    return {
        "prism operator": [str(BIN / "prism"), "operator", "--liveness", liveness],
        "image entrypoint": [shutil.which(image[0], path=str(BIN)) or image[0], *image[1:]],
    }


@pytest.mark.parametrize("how", ["prism operator", "image entrypoint"])
async def test_operator_process_creates_children(cluster, progress, how, tmp_path):
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    env = {**os.environ, "PRISM_TIMER_INTERVAL": "0.3", "PRISM_METRICS_ENABLED": "false",
           "PRISM_PROGRESS_URL_TEMPLATE": progress.url_template}
    log = (tmp_path / "operator.log").open("wb")
    process = await asyncio.create_subprocess_exec(*commands(liveness)[how], env=env, stdout=log,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as session:
            async def alive() -> bool:
                try:
                    async with session.get(liveness, timeout=aiohttp.ClientTimeout(total=1)) as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not await alive():
                assert process.returncode is None, (tmp_path / "operator.log").read_text()
                assert loop.time() < deadline, "liveness endpoint never answered"
                await asyncio.sleep(0.1)

        created = await cluster.create_job(job_manifest())
        name, rayjob = child_names(created)
        await wait_for("children", lambda: cluster.clusters() == [name] and cluster.rayjobs() == [rayjob(1)],
                       timeout=30, state=lambda: (tmp_path / "operator.log").read_text()[-3000:])
        await wait_for("status", lambda: cluster.status().get("phase") == "Provisioning", timeout=30)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
    assert process.returncode == 0, (tmp_path / "operator.log").read_text()[-3000:]
