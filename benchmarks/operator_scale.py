"""Operator scale: N ExtractionJobs against the emulated Kubernetes API with the real kopf runtime.

`prism operator` runs as its own process (so its peak RSS is its own) against kmock's
KubernetesEmulator (with the fixes in tests/operator/kube_emulator.py), in this process. The
benchmark plays KubeRay (cluster ready, RayJob RUNNING) and the pipeline's progress endpoint (a
local HTTP server returning steady progress), and measures:

- time until every job has its RayCluster and RayJob;
- once every job shows Running with progress, API requests per job per minute over a steady window
  (writes should be 0) and progress reads per job per sync interval (at most 1);
- the operator's peak RSS (VmHWM).

    .venv/bin/python benchmarks/operator_scale.py --jobs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import attrs
import kmock
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.operator.kube_emulator import PRISM, RAY, ApiServerEmulator, declare_resources  # noqa: E402

NAMESPACE = "bench"
CREATE_CONCURRENCY = 8


@attrs.define(kw_only=True)
class BenchEmulator(ApiServerEmulator):
    """kmock records every request for test assertions and re-scans that record to match each new
    request against its reactions: O(n^2) over a run, which throttles the emulated API server long
    before the operator. Here requests are counted by method and only a short tail of the record
    is kept; the emulation itself is unchanged."""

    counts: collections.Counter = attrs.field(factory=collections.Counter, init=False)

    async def _handle(self, request):
        self.counts[request.method] += 1
        try:
            return await super()._handle(request)
        finally:
            # Keep more than can be in flight at once (16 operator API threads, kopf's own calls,
            # CREATE_CONCURRENCY creates): kmock finds an in-flight request here by identity.
            if len(self._requests) > 96:
                del self._requests[:-48]

PROGRESS = "\n".join([
    "# TYPE prism_files_total gauge", "prism_files_total 100",
    "# TYPE prism_files_done counter", "prism_files_done_total 40",
    "# TYPE prism_files_failed counter", "prism_files_failed_total 0",
    "# TYPE prism_points_written counter", "prism_points_written_total 4000",
    "# TYPE prism_pipeline_finished gauge", "prism_pipeline_finished 0",
]) + "\n"


def job(i: int) -> dict:
    return {
        "apiVersion": PRISM, "kind": "ExtractionJob",
        "metadata": {"name": f"job-{i:05d}", "namespace": NAMESPACE},
        "spec": {
            "source": {"uri": f"s3://media/batch-{i}/"},
            "extractors": [{"name": "text", "kind": "text-embedding"},
                           {"name": "faces", "kind": "face-detection"}],
            "sink": {"qdrant": {"url": "http://qdrant.qdrant:6333", "collection": f"c{i}"}},
        },
    }


def live(emulator: ApiServerEmulator, api: str, plural: str) -> dict[str, dict]:
    res = kmock.resource(f"{api}/{plural}")
    return {name: obj for (r, ns, name), obj in list(emulator.objects.items())
            if r == res and ns == NAMESPACE and not obj.deleted}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait(what: str, check, timeout: float, every: float = 0.5) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def run(jobs: int, interval: float, window: float, timeout: float) -> dict:
    emulator = BenchEmulator()
    declare_resources(emulator)
    hits: collections.Counter[str] = collections.Counter()

    async def progress(request: web.Request) -> web.Response:
        hits[request.match_info["service"]] += 1
        return web.Response(text=PROGRESS, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{namespace}/{service}/metrics", progress)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    progress_port = site._server.sockets[0].getsockname()[1]

    async with emulator, kmock.Server(emulator) as server:
        tmp = Path(tempfile.mkdtemp(prefix="prism-bench-"))
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": str(server.url).rstrip("/")}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench"}}],
            "users": [{"name": "bench", "user": {"token": "bench"}}],
        }))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PRISM_TIMER_INTERVAL": str(interval),
               "PRISM_METRICS_ENABLED": "false",
               "PRISM_PROGRESS_URL_TEMPLATE": f"http://127.0.0.1:{progress_port}/{{namespace}}/{{service}}{{path}}"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = (tmp / "operator.log").open("wb")
        operator = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "prism"), "operator", "--liveness", "none",
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT)
        try:
            await asyncio.sleep(3)  # let kopf log in and start watching
            path = f"/apis/{PRISM}/namespaces/{NAMESPACE}/extractionjobs"
            limit = asyncio.Semaphore(CREATE_CONCURRENCY)

            async def create(i: int) -> None:
                async with limit, server.client.post(path, json=job(i)) as r:
                    assert r.status < 300, await r.text()

            t0 = time.monotonic()
            await asyncio.gather(*(create(i) for i in range(jobs)))
            created_s = time.monotonic() - t0
            await wait("every job's RayCluster and RayJob",
                       lambda: len(live(emulator, RAY, "rayclusters")) >= jobs
                       and len(live(emulator, RAY, "rayjobs")) >= jobs, timeout)
            children_s = time.monotonic() - t0

            # KubeRay's part: every cluster ready, every RayJob running.
            for name, obj in live(emulator, RAY, "rayclusters").items():
                obj.patch({"status": {"state": "ready", "readyWorkerReplicas": 1, "desiredWorkerReplicas": 1,
                                      "head": {"serviceName": f"{name}-head-svc"}}})
            for obj in live(emulator, RAY, "rayjobs").values():
                obj.patch({"status": {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}})

            def all_running() -> bool:
                xjs = live(emulator, PRISM, "extractionjobs")
                return len(xjs) == jobs and all(
                    (o.raw.get("status") or {}).get("phase") == "Running"
                    and (o.raw["status"].get("progress") or {}).get("filesDone") == 40 for o in xjs.values())

            running_s = await wait("every job Running with progress", all_running, timeout)
            await asyncio.sleep(interval * 2)  # let any in-flight reconcile finish

            before = collections.Counter(emulator.counts)
            before_hits = sum(hits.values())
            operator_cpu, emulator_cpu = cpu_seconds(operator.pid), cpu_seconds(os.getpid())
            start = time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - start
            operator_cpu = cpu_seconds(operator.pid) - operator_cpu
            emulator_cpu = cpu_seconds(os.getpid()) - emulator_cpu
            by_method = emulator.counts - before
            writes = sum(n for m, n in by_method.items() if m in ("POST", "PUT", "PATCH", "DELETE"))
            reads = sum(hits.values()) - before_hits
            per_min = 60.0 / elapsed
            return {
                "jobs": jobs,
                "timer_interval_s": interval,
                "create_requests_s": round(created_s, 1),
                "children_for_all_jobs_s": round(children_s, 1),
                # The operator's own share: how long after the last create the last child appeared.
                "children_lag_after_last_create_s": round(children_s - created_s, 1),
                "all_running_after_s": round(running_s, 1),
                "steady_window_s": round(elapsed, 1),
                "api_requests_per_job_per_min": round(sum(by_method.values()) / jobs * per_min, 3),
                "api_writes_per_job_per_min": round(writes / jobs * per_min, 3),
                "api_requests_by_method": dict(by_method),
                "progress_reads_per_job_per_interval": round(reads / jobs / (elapsed / interval), 3),
                "operator_peak_rss_mb": round(peak_rss_mb(operator.pid), 1),
                # Where the steady window's CPU went: the operator vs the emulated API server (and
                # the fake KubeRay/progress endpoint) in this process. A core is 1.0.
                "steady_cpu_operator": round(operator_cpu / elapsed, 2),
                "steady_cpu_emulated_api": round(emulator_cpu / elapsed, 2),
            }
        finally:
            if operator.returncode is None:
                operator.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(operator.wait(), timeout=30)
                except TimeoutError:
                    operator.kill()
            log.close()
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="PRISM_TIMER_INTERVAL (seconds)")
    parser.add_argument("--window", type=float, default=60.0, help="steady-state measuring window (seconds)")
    parser.add_argument("--timeout", type=float, default=900.0, help="deadline for each phase (seconds)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.jobs, args.interval, args.window, args.timeout)), indent=2))


if __name__ == "__main__":
    main()
