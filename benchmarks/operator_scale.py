"""Operator scale: N ExtractionJobs against a real kube-apiserver + etcd, with the real kopf runtime.

`prism operator` runs as its own process (its RSS is its own), as the prism-operator ServiceAccount
under the shipped ClusterRole (manifests/rbac/clusterrole.yaml: RBAC applies to every call), against
etcd and kube-apiserver on 127.0.0.1 started from the binaries of scripts/cluster/build.sh by
scripts/cluster/controlplane.py (its own state directory and ports: it never touches the test
tier's control plane). No KubeRay controller runs: the benchmark plays KubeRay (every RayCluster
`ready`, every RayJob `RUNNING`, written through the status subresource) and the pipeline's
progress endpoint (a local HTTP server returning steady progress). It measures:

- time until every job has its RayCluster and RayJob (from the first create);
- once every job shows Running with progress, the operator's API requests per job per minute over a
  steady window, counted by the API server: its audit log records every request of the operator's
  ServiceAccount (and nothing else), by verb and resource; watches are reported apart;
- the operator's peak RSS (VmHWM), and CPU per process over the window.

    .venv/bin/python benchmarks/operator_scale.py --jobs 1000            # real API server (default)
    .venv/bin/python benchmarks/operator_scale.py --jobs 1000 --emulated # kmock's emulator, in-process
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
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

def progress_text(job_name: str) -> str:
    """The pipeline's steady progress for one job's attempt 1 (the operator checks whose it is)."""
    own = f'{{job="{job_name}",namespace="{NAMESPACE}",attempt="1"}}'
    return "\n".join([
        "# TYPE prism_files_total gauge", f"prism_files_total{own} 100",
        "# TYPE prism_files_done counter", f"prism_files_done_total{own} 40",
        "# TYPE prism_files_failed counter", f"prism_files_failed_total{own} 0",
        "# TYPE prism_points_written counter", f"prism_points_written_total{own} 4000",
        "# TYPE prism_pipeline_finished gauge", f"prism_pipeline_finished{own} 0",
    ]) + "\n"


def job_of(service: str) -> str:
    """`job-00042-<hash>-head-svc` -> `job-00042` (job names are fixed-width)."""
    return service[:len("job-00000")]


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


async def serve_progress(hits: collections.Counter[str]) -> tuple[web.AppRunner, int]:
    """Every job's progress endpoint, as its Ray head would serve it, on one local port; `hits`
    counts the reads per head service. Returns the runner (clean it up) and the port."""

    async def progress(request: web.Request) -> web.Response:
        hits[request.match_info["service"]] += 1
        return web.Response(text=progress_text(job_of(request.match_info["service"])), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{namespace}/{service}/metrics", progress)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def run_emulated(jobs: int, interval: float, window: float, timeout: float) -> dict:
    emulator = BenchEmulator()
    declare_resources(emulator)
    hits: collections.Counter[str] = collections.Counter()
    runner, progress_port = await serve_progress(hits)

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

            # KubeRay's part: every cluster ready, every RayJob running, and told to the watchers (the
            # operator reads its children from its watches).
            for name, obj in live(emulator, RAY, "rayclusters").items():
                obj.patch({"status": {"state": "ready", "readyWorkerReplicas": 1, "desiredWorkerReplicas": 1,
                                      "head": {"serviceName": f"{name}-head-svc"}}})
                await emulator._buses[kmock.resource(f"{RAY}/rayclusters")].put(
                    {"type": "MODIFIED", "object": copy.deepcopy(dict(obj.raw))})
            for obj in live(emulator, RAY, "rayjobs").values():
                obj.patch({"status": {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}})
                await emulator._buses[kmock.resource(f"{RAY}/rayjobs")].put(
                    {"type": "MODIFIED", "object": copy.deepcopy(dict(obj.raw))})

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


# ---- against a real API server ----------------------------------------------------------------

OPERATOR_NS, OPERATOR_SA = "prism-system", "prism-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
REQUEST_CONCURRENCY = 16
KUBERAY_CRDS = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")


def _controlplane():
    """scripts/cluster/controlplane.py as a module (stdlib and PyYAML only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prism_controlplane", ROOT / "scripts" / "cluster" / "controlplane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _audit_policy(path: Path) -> Path:
    """Every request of the operator's ServiceAccount, at Metadata level; nothing else."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}]}))
    return path


def _audited(audit_log: Path, start: float, end: float) -> collections.Counter:
    """The operator's requests received in [start, end] (unix time) that completed, by 'verb resource'."""
    from datetime import datetime

    counts: collections.Counter[str] = collections.Counter()
    if not audit_log.exists():
        return counts
    for line in audit_log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("stage") != "ResponseComplete" or (event.get("user") or {}).get("username") != OPERATOR_USER:
            continue
        received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        if start <= received <= end:
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?")) + (
                f"/{ref['subresource']}" if ref.get("subresource") else "")
            counts[f"{event.get('verb')} {resource}"] += 1
    return counts


def _current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Admin:
    """The benchmark's own client (cluster admin): creates jobs, plays KubeRay, reads progress."""

    def __init__(self, server: str, token: str, ca: Path):
        import ssl

        import aiohttp

        self.server = server
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)),
                                           limit=REQUEST_CONCURRENCY * 2),
            timeout=aiohttp.ClientTimeout(total=120))
        self.limit = asyncio.Semaphore(REQUEST_CONCURRENCY)

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: dict | None = None, merge: bool = False,
                      headers: dict | None = None) -> dict:
        extra = dict(headers or {})
        if merge:
            extra["Content-Type"] = "application/merge-patch+json"
        import aiohttp

        for attempt in range(6):  # bounded: a 409 on a retried create is done; 429/5xx/disconnects are retried
            try:
                async with self.limit, self.session.request(method, self.server + path, json=body,
                                                            headers=extra) as r:
                    text = await r.text()
                    if r.status < 300 or (r.status == 409 and method == "POST" and attempt):
                        return json.loads(text) if text else {}
                    if r.status not in (429, 500, 503, 504) or attempt == 5:
                        raise SystemExit(f"{method} {path}: HTTP {r.status}: {text[:300]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == 5:
                    raise SystemExit(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            await asyncio.sleep(1.0 * (attempt + 1))
        return {}

    async def names(self, api: str, plural: str) -> list[str]:
        """Names only (PartialObjectMetadataList): cheap enough to poll at 10,000 objects."""
        meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        listed = await self.request("GET", f"/apis/{api}/namespaces/{NAMESPACE}/{plural}",
                                    headers={"Accept": meta})
        return [item["metadata"]["name"] for item in listed.get("items") or []]

    async def items(self, api: str, plural: str) -> list[dict]:
        return (await self.request("GET", f"/apis/{api}/namespaces/{NAMESPACE}/{plural}")).get("items") or []


async def _poll(what: str, check, timeout: float, every: float = 2.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def run_real(jobs: int, interval: float, window: float, timeout: float, port_base: int,
                   keep: bool) -> dict:
    cp = _controlplane()
    root = Path(tempfile.mkdtemp(prefix="prism-bench-cp-"))
    lay = cp.Layout(root, port_base)
    audit_log = root / "audit.log"
    audit_flags = [f"--audit-policy-file={_audit_policy(root / 'audit-policy.yaml')}",
                   f"--audit-log-path={audit_log}", "--audit-log-maxsize=0", "--audit-log-format=json"]
    start_process = cp.start

    def start(lay_, name, argv, env=None):  # the API server with its audit log; the rest as controlplane.py has it
        start_process(lay_, name, argv + (audit_flags if name == "kube-apiserver" else []), env)

    cp.start = start
    hits: collections.Counter[str] = collections.Counter()
    runner, progress_port = await serve_progress(hits)
    operator = admin = None
    log = None
    try:
        t_cp = time.monotonic()
        cp.use_built_kubectl()
        cp.make_credentials(lay)
        token = (root / "pki" / "admin.token").read_text()
        cp.write_kubeconfig(lay.kubeconfig, lay.server, root / "pki" / "ca.crt", token, cp.ADMIN_TOKEN_USER)
        await asyncio.to_thread(cp.start_etcd, lay)
        await asyncio.to_thread(cp.start_apiserver, lay)
        control_plane_s = time.monotonic() - t_cp
        crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
        kuberay = cp.module_dir("github.com/ray-project/kuberay/ray-operator", cp.VERSIONS["KUBERAY_VERSION"])
        crds += [yaml.safe_load((kuberay / "config" / "crd" / "bases" / name).read_text()) for name in KUBERAY_CRDS]
        await asyncio.to_thread(cp.apply, lay, crds, True)
        await asyncio.to_thread(cp.wait_established, lay, [d["metadata"]["name"] for d in crds])
        role = yaml.safe_load((ROOT / "manifests" / "rbac" / "clusterrole.yaml").read_text())
        await asyncio.to_thread(cp.apply, lay, [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR_SA, "namespace": OPERATOR_NS}},
            role,
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": role["metadata"]["name"]},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": role["metadata"]["name"]},
             "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": OPERATOR_NS}]},
        ])
        operator_kubeconfig = await asyncio.to_thread(cp.service_account_kubeconfig, lay, OPERATOR_NS, OPERATOR_SA,
                                                      root / "operator.kubeconfig")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
               "KUBECONFIG": str(operator_kubeconfig), "PRISM_TIMER_INTERVAL": str(interval),
               "PRISM_METRICS_ENABLED": "false", "PYTHONUNBUFFERED": "1",
               "PRISM_PROGRESS_URL_TEMPLATE": f"http://127.0.0.1:{progress_port}/{{namespace}}/{{service}}{{path}}"}
        log = (root / "operator.log").open("wb")
        operator = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "prism"), "operator", "--liveness", "none",
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        admin = Admin(lay.server, token, root / "pki" / "ca.crt")

        async def watching() -> bool:  # kopf has listed and watches every resource it serves (audit log)
            if operator.returncode is not None:
                raise SystemExit(f"the operator exited ({operator.returncode}); its log: {root / 'operator.log'}")
            text = audit_log.read_text(errors="replace") if audit_log.exists() else ""
            started = {json.loads(line).get("objectRef", {}).get("resource") for line in text.splitlines()
                       if '"verb":"watch"' in line and '"stage":"ResponseStarted"' in line}
            return {"extractionjobs", "rayclusters", "rayjobs", "pods"} <= started

        await _poll("the operator's watches", watching, 120, every=0.5)

        path = f"/apis/{PRISM}/namespaces/{NAMESPACE}/extractionjobs"
        t0 = time.monotonic()
        await asyncio.gather(*(admin.request("POST", path, job(i)) for i in range(jobs)))
        created_s = time.monotonic() - t0

        async def children_exist() -> bool:
            counts = len(await admin.names(RAY, "rayclusters")), len(await admin.names(RAY, "rayjobs"))
            print(f"[bench] {time.monotonic() - t0:.1f}s: children {counts}", file=sys.stderr)
            return min(counts) >= jobs

        await _poll("every job's RayCluster and RayJob", children_exist, timeout, every=1.0)
        children_s = time.monotonic() - t0

        # KubeRay's part, through the status subresource: every cluster ready, every RayJob running.
        ray = f"/apis/{RAY}/namespaces/{NAMESPACE}"
        clusters, rayjobs = await admin.names(RAY, "rayclusters"), await admin.names(RAY, "rayjobs")
        await asyncio.gather(*(admin.request("PATCH", f"{ray}/rayclusters/{name}/status", {"status": {
            "state": "ready", "readyWorkerReplicas": 1, "desiredWorkerReplicas": 1,
            "head": {"serviceName": f"{name}-head-svc"}}}, merge=True) for name in clusters))
        await asyncio.gather(*(admin.request("PATCH", f"{ray}/rayjobs/{name}/status", {"status": {
            "jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}}, merge=True) for name in rayjobs))
        t_played = time.monotonic()

        async def all_running() -> bool:
            xjs = await admin.items(PRISM, "extractionjobs")
            running = sum((o.get("status") or {}).get("phase") == "Running"
                          and ((o.get("status") or {}).get("progress") or {}).get("filesDone") == 40 for o in xjs)
            print(f"[bench] {time.monotonic() - t0:.1f}s: running with progress {running}", file=sys.stderr)
            return running == jobs

        running_s = await _poll("every job Running with progress", all_running, timeout, every=10.0)
        await asyncio.sleep(interval * 3)  # in-flight reconciles finish; rates settle (itemsPerSecond to 0)

        before_hits = sum(hits.values())
        operator_cpu, bench_cpu = cpu_seconds(operator.pid), cpu_seconds(os.getpid())
        apiserver_pid = int(lay.pidfile("kube-apiserver").read_text())
        etcd_pid = int(lay.pidfile("etcd").read_text())
        apiserver_cpu, etcd_cpu = cpu_seconds(apiserver_pid), cpu_seconds(etcd_pid)
        start_wall, start = time.time(), time.monotonic()
        await asyncio.sleep(window)
        elapsed, end_wall = time.monotonic() - start, time.time()
        cpu = {"operator": cpu_seconds(operator.pid) - operator_cpu,
               "kube_apiserver": cpu_seconds(apiserver_pid) - apiserver_cpu,
               "etcd": cpu_seconds(etcd_pid) - etcd_cpu,
               "benchmark_progress_server": cpu_seconds(os.getpid()) - bench_cpu}
        await asyncio.sleep(2)  # the audit log's last lines
        by_call = _audited(audit_log, start_wall, end_wall)
        watches = sum(n for call, n in by_call.items() if call.startswith("watch "))
        requests = sum(by_call.values()) - watches
        writes = sum(n for call, n in by_call.items() if call.split()[0] in ("create", "update", "patch", "delete"))
        reads = sum(hits.values()) - before_hits
        per_min = 60.0 / elapsed
        return {
            "api_server": "kube-apiserver " + cp.VERSIONS["KUBERNETES_VERSION"] + " + etcd " + cp.VERSIONS["ETCD_VERSION"],
            "jobs": jobs,
            "timer_interval_s": interval,
            "control_plane_start_s": round(control_plane_s, 1),
            "create_requests_s": round(created_s, 1),
            "children_for_all_jobs_s": round(children_s, 1),
            "children_lag_after_last_create_s": round(children_s - created_s, 1),
            "all_running_after_kuberay_status_s": round(running_s, 1),
            "kuberay_status_writes_s": round(t_played - t0 - children_s, 1),
            "steady_window_s": round(elapsed, 1),
            "api_requests_per_job_per_min": round(requests / jobs * per_min, 4),
            "api_writes_per_job_per_min": round(writes / jobs * per_min, 4),
            "api_requests_in_window": dict(by_call),
            "watch_requests_in_window": watches,
            "progress_reads_per_job_per_interval": round(reads / jobs / (elapsed / interval), 3),
            "operator_peak_rss_mb": round(peak_rss_mb(operator.pid), 1),
            "operator_rss_mb": round(_current_rss_mb(operator.pid), 1),
            "steady_cpu_cores": {k: round(v / elapsed, 2) for k, v in cpu.items()},
            "operator_log": str(root / "operator.log") if keep else "(removed; --keep keeps it)",
        }
    finally:
        if operator is not None and operator.returncode is None:
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(operator.wait(), timeout=30)
            except TimeoutError:
                os.killpg(operator.pid, signal.SIGKILL)
        if log is not None:
            log.close()
        if admin is not None:
            await admin.close()
        await runner.cleanup()
        cp.start = start_process
        for name in ("kube-apiserver", "etcd"):
            cp.stop(lay, name)
        if not keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="PRISM_TIMER_INTERVAL (seconds)")
    parser.add_argument("--window", type=float, default=60.0, help="steady-state measuring window (seconds)")
    parser.add_argument("--timeout", type=float, default=900.0, help="deadline for each phase (seconds)")
    parser.add_argument("--emulated", action="store_true",
                        help="kmock's emulated API server in this process instead of a real kube-apiserver")
    parser.add_argument("--port-base", type=int, default=27800,
                        help="first of the control plane's loopback ports (the test tier uses 27300)")
    parser.add_argument("--keep", action="store_true", help="keep the control plane's directory (logs, audit log)")
    args = parser.parse_args()
    if args.emulated:
        result = asyncio.run(run_emulated(args.jobs, args.interval, args.window, args.timeout))
    else:
        result = asyncio.run(run_real(args.jobs, args.interval, args.window, args.timeout, args.port_base, args.keep))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
