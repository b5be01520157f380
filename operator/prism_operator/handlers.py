"""Thin kopf handlers: each delegates to the Reconciler. `register()` puts them on a registry, so
tests run the real kopf runtime with their own registry and settings."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from prism_api import GROUP, PLURAL, VERSION, ExtractionJobStatus, Phase
from prism_api.conventions import JOB_LABEL
from prism_api.cron_job import CRON_LABEL, CRON_PLURAL
from prism_api.search_service import SEARCH_PLURAL

from . import operator_metrics as metrics
from .builders.rayservice import SEARCH_LABEL
from .child_index import ChildIndexes, slim_cluster, slim_pod, slim_ray_job
from .cron.runs import run_from
from .cron.schedule_check import reconcile_cron
from .k8s_api import RAY_GROUP, RAY_VERSION, RAYCLUSTERS, RAYJOBS, RAYSERVICES, KubeApi, load_client_config
from .reconcile import JobMemory, Reconciler, old_status
from .search.service_reconcile import SearchMemory, SearchReconciler
from .settings import CLUSTER_LABEL, OperatorConfig, configure_kopf
from .status.cleanup import cleanup_pending
from .status.derive import SUSPENDED

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
CRON_RESOURCE = (GROUP, VERSION, CRON_PLURAL)
SEARCH_RESOURCE = (GROUP, VERSION, SEARCH_PLURAL)
RAYSERVICE_RESOURCE = (RAY_GROUP, RAY_VERSION, RAYSERVICES)
RAYCLUSTER_RESOURCE = (RAY_GROUP, RAY_VERSION, RAYCLUSTERS)
RAYJOB_RESOURCE = (RAY_GROUP, RAY_VERSION, RAYJOBS)
POD_RESOURCE = ("v1", "pods")
# A finalizer that cannot reach the API gives up after this many tries (kopf's backoff between them),
# then leaves the object to owner-reference garbage collection instead of blocking deletion forever.
DELETE_RETRIES = 10


def needs_timer(spec: Any, status: Any, memo: Any = None, **_: Any) -> bool:
    """Live jobs, finished ones whose cleanup is still due (status/cleanup.py: the debug record of a job
    that ended with failures, a RayCluster kept, scaled or deleted on a clock), and any job whose last reconcile
    could not finish its API calls; others cost nothing. A suspended job waits for its spec to
    change (the update handler resumes it) once its RayCluster is as it should be (reason
    Suspended: suspended, or deleted under Kueue); until then (Suspending) the timer corrects drift."""
    if memo is not None and memo.get("pending_errors"):
        return True
    spec = spec or {}
    parsed = old_status({"status": dict(status or {})})
    if parsed.phase == Phase.SUSPENDED:
        return not spec.get("suspend") or parsed.reason != SUSPENDED
    if not parsed.phase.is_terminal():
        return True
    return cleanup_pending(spec, parsed)


class Runtime:
    """What the handlers share: the API client, one HTTP session, the metrics server."""

    def __init__(self, config: OperatorConfig):
        self.config = config
        self.reconciler: Reconciler | None = None
        self.search: SearchReconciler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._metrics: Any = None
        self.metrics_port: int | None = None

    async def start(self) -> None:
        api = KubeApi(load_client_config(self.config.api_concurrency), timeout=self.config.api_timeout,
                      concurrency=self.config.api_concurrency)
        # trust_env: HTTP(S)_PROXY/NO_PROXY apply to the progress and dashboard reads, for clusters
        # whose operator reaches Services through a proxy (and the cluster tier's DNS stand-in).
        self._session = aiohttp.ClientSession(trust_env=True)
        self.reconciler = Reconciler(api=api, session=self._session, config=self.config)
        self.search = SearchReconciler(api=api, session=self._session, config=self.config)
        if self.config.metrics_enabled:
            self._metrics, self.metrics_port = await metrics.start_server(
                self.config.metrics_host, self.config.metrics_port)
            log.info("operator metrics on %s:%s/metrics", self.config.metrics_host, self.metrics_port)

    async def stop(self) -> None:
        if self.reconciler is not None:
            self.reconciler.api.close()
        if self._session is not None:
            await self._session.close()
        if self._metrics is not None:
            await self._metrics.cleanup()

    async def reconcile(self, body: Any, patch: Any, memo: Any, indexes: ChildIndexes | None = None
                        ) -> ExtractionJobStatus:
        # Handlers and the timer of one job run in one event loop: a per-job lock keeps their
        # reconciles from interleaving.
        lock = memo.setdefault("reconcile_lock", asyncio.Lock())
        memory = memo.setdefault("job", JobMemory())
        async with lock:
            outcome = await self.reconciler.reconcile(body, patch, memory, indexes=indexes)
        memo["pending_errors"] = bool(outcome.errors)
        if outcome.errors:
            # kopf retries the handler after the backoff; the status written so far stays.
            raise kopf.TemporaryError("; ".join(outcome.errors)[:1000], delay=self.config.retry_backoff)
        return outcome.status


    async def reconcile_search(self, body: Any, patch: Any, memo: Any, rayservices: list[dict]) -> None:
        lock = memo.setdefault("reconcile_lock", asyncio.Lock())
        memory = memo.setdefault("search", SearchMemory())
        async with lock:
            outcome = await self.search.reconcile(body, patch, rayservices, memory)
        if outcome.errors:
            raise kopf.TemporaryError("; ".join(outcome.errors)[:1000], delay=self.config.retry_backoff)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> Runtime:
    runtime = Runtime(config)

    @kopf.on.startup(registry=registry)
    async def start_operator(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, config)
        await runtime.start()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own readers take KUBECONFIG and the service account as they are at login time.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def stop_operator(**_: Any) -> None:
        await runtime.stop()

    @kopf.on.probe(id="reconciler", registry=registry)
    def reconciler_ready(**_: Any) -> bool:
        return runtime.reconciler is not None

    # The children of every ExtractionJob, kept current by kopf's watches (child_index.py): a reconcile reads
    # these, not the API, so an idle job costs no API request. kopf fills them before any handler runs.
    # RayClusters: all of them (a job may run on someone else's, spec.cluster.existing). RayJobs and Pods:
    # Prism's only, selected on the server too (settings.py, configure_kopf).
    @kopf.index(*RAYCLUSTER_RESOURCE, id="ray_clusters", registry=registry)
    def ray_clusters(namespace: str, name: str, body: Any, **_: Any) -> dict:
        return {(namespace, name): slim_cluster(body)}

    @kopf.index(*RAYJOB_RESOURCE, id="ray_jobs", labels={JOB_LABEL: kopf.PRESENT}, registry=registry)
    def ray_jobs(namespace: str, name: str, body: Any, **_: Any) -> dict:
        return {(namespace, name): slim_ray_job(body)}

    @kopf.index(*POD_RESOURCE, id="cluster_pods", labels={JOB_LABEL: kopf.PRESENT, CLUSTER_LABEL: kopf.PRESENT},
                registry=registry)
    def cluster_pods(namespace: str, labels: Any, body: Any, **_: Any) -> dict:
        return {(namespace, labels[CLUSTER_LABEL]): slim_pod(body)}

    def children(kwargs: dict) -> ChildIndexes:
        return ChildIndexes(kwargs["ray_clusters"], kwargs["ray_jobs"], kwargs["cluster_pods"])

    @kopf.on.create(*RESOURCE, id="create", registry=registry)
    async def create_extraction_job(body: Any, patch: Any, memo: Any, **kwargs: Any) -> None:
        await runtime.reconcile(body, patch, memo, children(kwargs))

    @kopf.on.resume(*RESOURCE, id="resume", registry=registry)
    async def resume_extraction_job(body: Any, patch: Any, memo: Any, **kwargs: Any) -> None:
        await runtime.reconcile(body, patch, memo, children(kwargs))

    @kopf.on.update(*RESOURCE, id="update", field="spec", registry=registry)
    async def update_extraction_job(body: Any, patch: Any, memo: Any, **kwargs: Any) -> None:
        await runtime.reconcile(body, patch, memo, children(kwargs))

    # Every interval (10 s by default), for live jobs: with the children indexed, a tick costs no API
    # request (one progress read from the Ray head), so a child's change shows in the status within one
    # interval. No per-child-event wake-up: kopf cannot run another object's timer early, and writing to
    # the ExtractionJob to wake it would cost an API write per child change.
    @kopf.timer(*RESOURCE, id="sync", interval=config.timer_interval, when=needs_timer, registry=registry)
    async def sync_extraction_job(body: Any, patch: Any, memo: Any, **kwargs: Any) -> None:
        await runtime.reconcile(body, patch, memo, children(kwargs))

    # Every scheduled run, by (namespace, schedule), kept current by the ExtractionJob watch: checking a
    # schedule reads this, never the API.
    @kopf.index(*RESOURCE, id="cron_runs", labels={CRON_LABEL: kopf.PRESENT}, registry=registry)
    def cron_runs(namespace: str, name: str, labels: Any, annotations: Any, status: Any, **_: Any) -> dict:
        return {(namespace, labels[CRON_LABEL]): run_from(name, dict(annotations), dict(status or {}))}

    @kopf.timer(*CRON_RESOURCE, id="schedule", interval=config.cron_interval, registry=registry)
    async def check_schedule(body: Any, patch: Any, namespace: str, name: str, cron_runs: kopf.Index,
                             **_: Any) -> None:
        errors = await reconcile_cron(runtime.reconciler.api, body, patch, list(cron_runs.get((namespace, name), [])))
        if errors:
            raise kopf.TemporaryError("; ".join(errors)[:1000], delay=config.retry_backoff)

    # SearchServices: each one's RayService, by (namespace, SearchService name), kept current by kopf's
    # watch of RayServices. Every SearchService handler reads this, never the API: an idle service
    # costs no API request, and a RayService's status change is seen within search_interval.
    @kopf.index(*RAYSERVICE_RESOURCE, id="search_rayservices", labels={SEARCH_LABEL: kopf.PRESENT},
                registry=registry)
    def search_rayservices(namespace: str, name: str, labels: Any, meta: Any, status: Any, **_: Any) -> dict:
        kept = {k: meta[k] for k in ("name", "namespace", "uid", "generation", "annotations", "ownerReferences",
                                     "deletionTimestamp") if k in meta}
        return {(namespace, labels[SEARCH_LABEL]): {"metadata": kept, "status": dict(status or {})}}

    def rayservices_of(index: kopf.Index, namespace: str, name: str) -> list[dict]:
        return list(index.get((namespace, name), []))

    @kopf.on.create(*SEARCH_RESOURCE, id="search-create", registry=registry)
    async def create_search_service(body: Any, patch: Any, memo: Any, namespace: str, name: str,
                                    search_rayservices: kopf.Index, **_: Any) -> None:
        await runtime.reconcile_search(body, patch, memo, rayservices_of(search_rayservices, namespace, name))

    @kopf.on.resume(*SEARCH_RESOURCE, id="search-resume", registry=registry)
    async def resume_search_service(body: Any, patch: Any, memo: Any, namespace: str, name: str,
                                    search_rayservices: kopf.Index, **_: Any) -> None:
        await runtime.reconcile_search(body, patch, memo, rayservices_of(search_rayservices, namespace, name))

    @kopf.on.update(*SEARCH_RESOURCE, id="search-update", field="spec", registry=registry)
    async def update_search_service(body: Any, patch: Any, memo: Any, namespace: str, name: str,
                                    search_rayservices: kopf.Index, **_: Any) -> None:
        await runtime.reconcile_search(body, patch, memo, rayservices_of(search_rayservices, namespace, name))

    @kopf.timer(*SEARCH_RESOURCE, id="search-sync", interval=config.search_interval, registry=registry)
    async def sync_search_service(body: Any, patch: Any, memo: Any, namespace: str, name: str,
                                  search_rayservices: kopf.Index, **_: Any) -> None:
        await runtime.reconcile_search(body, patch, memo, rayservices_of(search_rayservices, namespace, name))

    @kopf.on.delete(*RESOURCE, id="delete", retries=DELETE_RETRIES, registry=registry)
    async def delete_extraction_job(body: Any, memo: Any, **_: Any) -> None:
        lock = memo.setdefault("reconcile_lock", asyncio.Lock())
        async with lock:
            await runtime.reconciler.delete(body)

    return runtime
