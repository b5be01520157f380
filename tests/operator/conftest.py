"""Fixtures for the operator tests: the emulated API server, a real progress HTTP server, and the real
kopf runtime (KopfRunner, in its own thread) running the Prism handlers against them."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml
from aiohttp import web
from kopf.testing import KopfRunner

from prism_api.conventions import JOB_LABEL
from prism_operator.handlers import register
from prism_operator.settings import OperatorConfig

from .kube_emulator import PRISM, RAY, ApiServerEmulator, declare_resources

REPO = Path(__file__).resolve().parents[2]
KUBERAY_CRDS = REPO.parent / "shared" / "kuberay-crds"
NAMESPACE = "media"
WAIT_SECONDS = 20.0

BASE_JOB = {
    "apiVersion": PRISM,
    "kind": "ExtractionJob",
    "metadata": {"name": "campaign", "namespace": NAMESPACE,
                 "labels": {"kueue.x-k8s.io/queue-name": "gpu-batch"}},
    "spec": {
        "source": {"uri": "s3://media/campaign/", "secretRef": {"name": "s3-creds"}},
        "extractors": [{"name": "text", "kind": "text-embedding"},
                       {"name": "faces", "kind": "face-detection"}],
        "sink": {"qdrant": {"url": "http://qdrant.qdrant:6333", "collection": "campaign",
                            "apiKeySecretRef": {"name": "qdrant", "key": "api-key"}}},
        "retries": {"limit": 1},
    },
}


def job_manifest(**spec_changes: Any) -> dict:
    job = copy.deepcopy(BASE_JOB)
    job["spec"].update(spec_changes)
    return job


@dataclass
class ProgressServer:
    """A real HTTP server playing, per head service, the pipeline's progress endpoint and the Ray
    dashboard's job API (a submission it does not know is a 404, as in Ray)."""

    texts: dict[str, str] = field(default_factory=dict)  # "<namespace>/<service>" -> Prometheus text
    hits: dict[str, int] = field(default_factory=dict)
    ray_jobs: dict[str, str] = field(default_factory=dict)  # submission id -> Ray job status
    stops: list[str] = field(default_factory=list)           # submission ids asked to stop
    stop_works: bool = True                                  # a stop makes the job STOPPED
    logs: dict[str, str] = field(default_factory=dict)       # submission id -> its driver log
    logs_down: bool = False                                  # the logs API answers 503
    dashboard_down: bool = False
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['namespace']}/{request.match_info['service']}"
        self.hits[key] = self.hits.get(key, 0) + 1
        if key not in self.texts:
            return web.Response(status=503, text="progress actor not started")
        return web.Response(text=self.texts[key], content_type="text/plain")

    async def job(self, request: web.Request) -> web.Response:
        if self.dashboard_down:
            return web.Response(status=503, text="dashboard down")
        submission = request.match_info["id"]
        if submission not in self.ray_jobs:
            return web.Response(status=404, text=f"Job {submission} does not exist")
        return web.json_response({"submission_id": submission, "status": self.ray_jobs[submission]})

    async def stop(self, request: web.Request) -> web.Response:
        if self.dashboard_down:
            return web.Response(status=503, text="dashboard down")
        submission = request.match_info["id"]
        self.stops.append(submission)
        if submission not in self.ray_jobs:
            return web.Response(status=404, text=f"Job {submission} does not exist")
        running = self.ray_jobs[submission] in ("PENDING", "RUNNING")
        if running and self.stop_works:
            self.ray_jobs[submission] = "STOPPED"
        return web.json_response({"stopped": running})

    async def job_logs(self, request: web.Request) -> web.Response:
        if self.dashboard_down or self.logs_down:
            return web.Response(status=503, text="dashboard down")
        submission = request.match_info["id"]
        if submission not in self.logs:
            return web.Response(status=404, text=f"Job {submission} does not exist")
        return web.json_response({"logs": self.logs[submission]})

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{namespace}}/{{service}}{{path}}"

    @property
    def dashboard_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{namespace}}/{{service}}/dashboard"


def progress_text(total: int, done: int, failed: int = 0, skipped: int = 0, points: int = 0,
                  items: dict[str, int] | None = None, finished: bool = False,
                  samples: list[tuple[str, str, str]] = (), outcome: str | None = None,
                  job: str | None = "campaign", namespace: str | None = NAMESPACE,
                  attempt: int | None = 1) -> str:
    """The pipeline's progress text; every sample labelled with its job, namespace and attempt (a
    None leaves that label out)."""
    def label(value: str) -> str:  # Prometheus text-format escaping
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    who = {"job": job, "namespace": namespace, "attempt": None if attempt is None else str(attempt)}

    def labels(**extra: str) -> str:
        pairs = {**{k: v for k, v in who.items() if v is not None}, **extra}
        return "{" + ",".join(f'{k}="{label(v)}"' for k, v in pairs.items()) + "}" if pairs else ""

    lines = [
        "# TYPE prism_files_total gauge", f"prism_files_total{labels()} {total}",
        "# TYPE prism_files_done counter", f"prism_files_done_total{labels()} {done}",
        "# TYPE prism_files_failed counter", f"prism_files_failed_total{labels()} {failed}",
        "# TYPE prism_files_skipped counter", f"prism_files_skipped_total{labels()} {skipped}",
        "# TYPE prism_points_written counter", f"prism_points_written_total{labels()} {points}",
        "# TYPE prism_cpu_seconds counter", f"prism_cpu_seconds_total{labels()} 12.5",
        "# TYPE prism_gpu_seconds counter", f"prism_gpu_seconds_total{labels()} 0",
        "# TYPE prism_pipeline_finished gauge", f"prism_pipeline_finished{labels()} {int(finished)}",
        "# TYPE prism_items counter",
    ]
    lines += [f"prism_items_total{labels(extractor=k)} {v}" for k, v in (items or {}).items()]
    lines.append("# TYPE prism_failure_sample gauge")
    lines += [f"prism_failure_sample{labels(uri=u, stage=s, error=e)} 1" for u, s, e in samples]
    if outcome is not None:
        lines += ["# TYPE prism_pipeline_outcome gauge", f"prism_pipeline_outcome{labels(outcome=outcome)} 1"]
    return "\n".join(lines) + "\n"


class Cluster:
    """The test's handle on the emulated API server; it also plays KubeRay."""

    def __init__(self, emulator: ApiServerEmulator, server: kmock.Server):
        self.emulator = emulator
        self.server = server
        self._delivering: set[asyncio.Task] = set()

    @staticmethod
    def _path(api: str, plural: str, name: str = "", namespace: str = NAMESPACE) -> str:
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        return f"{base}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

    async def create_job(self, manifest: dict) -> dict:
        async with self.server.client.post(self._path(PRISM, "extractionjobs"), json=manifest) as r:
            assert r.status < 300, await r.text()
            return await r.json()

    async def patch_job(self, name: str, patch: dict) -> None:
        async with self.server.client.patch(self._path(PRISM, "extractionjobs", name), json=patch,
                                            headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status < 300, await r.text()

    async def delete_job(self, name: str) -> None:
        async with self.server.client.delete(self._path(PRISM, "extractionjobs", name)) as r:
            assert r.status < 300, await r.text()

    def get(self, api: str, plural: str, name: str, namespace: str = NAMESPACE) -> dict | None:
        key = (kmock.resource(f"{api}/{plural}"), namespace, name)
        if key in self.emulator.objects and not self.emulator.objects[key].deleted:
            return copy.deepcopy(dict(self.emulator.objects[key].raw))
        return None

    def names(self, api: str, plural: str, namespace: str = NAMESPACE) -> list[str]:
        res = kmock.resource(f"{api}/{plural}")
        return sorted(n for (r, ns, n), obj in self.emulator.objects.items()
                      if r == res and ns == namespace and not obj.deleted)

    def job(self, name: str = "campaign") -> dict | None:
        return self.get(PRISM, "extractionjobs", name)

    def status(self, name: str = "campaign") -> dict:
        return (self.job(name) or {}).get("status") or {}

    def clusters(self) -> list[str]:
        return self.names(RAY, "rayclusters")

    def rayjobs(self) -> list[str]:
        return self.names(RAY, "rayjobs")

    def _publish(self, resource: Any, kind: str, key: tuple) -> None:
        """Tell the watchers, as the API server would: the operator sees children through kopf's watches
        (its indexes), not by reading them. Delivered from the test's loop, right after this call."""
        raw = copy.deepcopy(dict(self.emulator.objects[key].raw))
        bus = self.emulator._buses[resource]
        self._delivering.add(asyncio.get_running_loop().create_task(bus.put({"type": kind, "object": raw})))
        self._delivering = {t for t in self._delivering if not t.done()}

    def set_child_status(self, plural: str, name: str, status: dict) -> None:
        """KubeRay's part: write a child's status (merge), as its controller would."""
        resource = kmock.resource(f"{RAY}/{plural}")
        self.emulator.objects[resource, NAMESPACE, name].patch({"status": status})
        self._publish(resource, "MODIFIED", (resource, NAMESPACE, name))

    def add_object(self, api: str, plural: str, obj: dict) -> None:
        """An object some other actor made (a shared RayCluster, a Pod)."""
        meta = obj["metadata"]
        resource = kmock.resource(f"{api}/{plural}")
        self.emulator.objects[resource, meta["namespace"], meta["name"]] = obj
        self._publish(resource, "ADDED", (resource, meta["namespace"], meta["name"]))

    def add_pod(self, name: str, cluster: str, status: dict, job: str = "campaign") -> None:
        """A pod of a RayCluster: KubeRay labels it ray.io/cluster; Prism's pod templates label it with the job."""
        self.add_object("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {"ray.io/cluster": cluster, JOB_LABEL: job}},
            "status": status,
        })

    def events(self) -> list[dict]:
        res = kmock.resource("v1/events")
        return [dict(obj.raw) for (r, _, _), obj in self.emulator.objects.items() if r == res]

    def requests(self) -> list[Any]:
        return list(self.emulator)  # kmock: iterating the handler yields every request served


async def wait_for_events(cluster: Cluster, reasons: set[str]) -> None:
    """kopf posts Events in the background: wait for them rather than race the poster."""
    await wait_for(f"events {sorted(reasons)}", lambda: reasons <= {e["reason"] for e in cluster.events()},
                   state=lambda: sorted({e["reason"] for e in cluster.events()}))


async def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS,
                   state: Callable[[], Any] | None = None) -> Any:
    """Poll `check` without blocking the loop (kmock serves from it) until truthy or the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; state: "
                                 f"{state() if state else result!r}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """`app` served on a free 127.0.0.1 port (yielded) for the duration of the block."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def progress() -> AsyncIterator[ProgressServer]:
    srv = ProgressServer()
    app = web.Application()
    app.router.add_get("/{namespace}/{service}/metrics", srv.handle)
    app.router.add_get("/{namespace}/{service}/dashboard/api/jobs/{id}", srv.job)
    app.router.add_post("/{namespace}/{service}/dashboard/api/jobs/{id}/stop", srv.stop)
    app.router.add_get("/{namespace}/{service}/dashboard/api/jobs/{id}/logs", srv.job_logs)
    async with serving(app) as srv.port:
        yield srv


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    emulator = ApiServerEmulator()
    declare_resources(emulator)
    async with emulator, kmock.Server(emulator) as server:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": str(server.url).rstrip("/")}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
        }))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield Cluster(emulator, server)


def operator_config(progress: ProgressServer, **overrides: Any) -> OperatorConfig:
    values = dict(timer_interval=0.25, progress_url_template=progress.url_template, progress_timeout=1.0,
                  dashboard_url_template=progress.dashboard_template, dashboard_timeout=1.0,
                  api_timeout=5.0, metrics_enabled=True, metrics_host="127.0.0.1", metrics_port=0,
                  retry_backoff=0.5, watch_timeout=30)
    values.update(overrides)
    return OperatorConfig(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningOperator:
    """The real kopf runtime in a thread; entered and left off the test's loop (kmock serves there)."""

    def __init__(self, config: OperatorConfig):
        self.config = config
        self.registry = kopf.OperatorRegistry()
        self.runtime = register(self.registry, config)
        settings = kopf.OperatorSettings()
        settings.networking.error_backoffs = [0.1, 0.2, 0.5]
        settings.persistence.consistency_timeout = 5.0
        self.liveness_port = free_port()
        self.runner = KopfRunner(["run", "--standalone", "--all-namespaces",
                                  f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz"],
                                 registry=self.registry, settings=settings, timeout=30)

    async def __aenter__(self) -> RunningOperator:
        await asyncio.to_thread(self.runner.__enter__)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.runner.__exit__, None, None, None)


@pytest.fixture
def operator(progress: ProgressServer, cluster: Cluster) -> Callable[..., RunningOperator]:
    logging.getLogger("kopf").setLevel(logging.INFO)

    def start(**overrides: Any) -> RunningOperator:
        return RunningOperator(operator_config(progress, **overrides))

    return start


def child_names(created: dict) -> tuple[str, Callable[[int], str]]:
    """(RayCluster name, attempt -> RayJob name) for a created ExtractionJob."""
    from prism_api import ray_cluster_name, ray_job_name

    meta = created["metadata"]
    cluster = ray_cluster_name(meta["namespace"], meta["name"], meta["uid"])
    return cluster, lambda attempt: ray_job_name(cluster, attempt)


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def play_cluster_ready(cluster: Cluster, name: str) -> None:
    cluster.set_child_status("rayclusters", name, {
        "state": "ready", "readyWorkerReplicas": 1, "desiredWorkerReplicas": 1,
        "head": {"serviceName": f"{name}-head-svc", "podName": f"{name}-head"},
    })


def play_rayjob(cluster: Cluster, name: str, job_status: str, deployment: str = "Running",
                message: str = "") -> None:
    status = {"jobStatus": job_status, "jobDeploymentStatus": deployment,
              "dashboardURL": "raycluster-head-svc:8265"}
    if message:
        status["message"] = message
    cluster.set_child_status("rayjobs", name, status)
