"""The operator's own Prometheus metrics, served on /metrics (PRISM_METRICS_PORT).

A private registry keeps them apart from anything else in the process. Job gauges are rebuilt
from an in-memory view of the jobs this operator instance reconciled.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from prism_api import ExtractionJobStatus, Phase

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS = Gauge("prism_operator_jobs", "ExtractionJobs by phase.", ["phase"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("prism_operator_reconcile_seconds", "Duration of one reconcile of one job.",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
RECONCILE_ERRORS = Counter("prism_operator_reconcile_errors", "Reconciles that ended in an error.",
                           registry=REGISTRY)
API_ERRORS = Counter("prism_operator_api_errors", "Failed Kubernetes API calls.", ["operation"],
                     registry=REGISTRY)
INDEX_FALLBACK_READS = Counter("prism_operator_index_fallback_reads",
                               "GETs of a child the watch had not delivered although the job's status says it "
                               "exists (0 in steady state).", ["kind"], registry=REGISTRY)
JOB_FILES_TOTAL = Gauge("prism_operator_job_files_total", "Files listed, per job.", ["namespace", "job"],
                        registry=REGISTRY)
JOB_FILES_DONE = Gauge("prism_operator_job_files_done", "Files processed, per job.", ["namespace", "job"],
                       registry=REGISTRY)
JOB_FILES_FAILED = Gauge("prism_operator_job_files_failed", "Files failed, per job.", ["namespace", "job"],
                         registry=REGISTRY)
JOB_POINTS = Gauge("prism_operator_job_points_written", "Points written to Qdrant, per job.",
                   ["namespace", "job"], registry=REGISTRY)
JOB_PERCENT = Gauge("prism_operator_job_progress_percent", "Percent of files finished, per job.",
                    ["namespace", "job"], registry=REGISTRY)

_MIRRORS = (JOB_FILES_TOTAL, JOB_FILES_DONE, JOB_FILES_FAILED, JOB_POINTS, JOB_PERCENT)
_phases: dict[tuple[str, str], Phase] = {}


def _recount() -> None:
    counts = {phase: 0 for phase in Phase}
    for phase in _phases.values():
        counts[phase] += 1
    for phase, count in counts.items():
        JOBS.labels(phase=phase.value).set(count)


def observe_job(namespace: str, name: str, status: ExtractionJobStatus) -> None:
    _phases[(namespace, name)] = status.phase
    _recount()
    p = status.progress
    JOB_FILES_TOTAL.labels(namespace, name).set(p.files_total)
    JOB_FILES_DONE.labels(namespace, name).set(p.files_done)
    JOB_FILES_FAILED.labels(namespace, name).set(p.files_failed)
    JOB_POINTS.labels(namespace, name).set(p.points_written)
    JOB_PERCENT.labels(namespace, name).set(p.percent)


def forget_job(namespace: str, name: str) -> None:
    _phases.pop((namespace, name), None)
    _recount()
    for gauge in _MIRRORS:
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass


async def _serve(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_server(host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve /metrics; returns the runner (to stop it) and the bound port (port 0 picks one)."""
    app = web.Application()
    app.router.add_get("/metrics", _serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
    return runner, bound
