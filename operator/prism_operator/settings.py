"""Operator configuration from environment variables, and the kopf settings that follow from it.

Every variable is optional; the defaults suit a cluster. Tests shorten the intervals and point
the progress URL at a local HTTP server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, fields

import kopf

from prism_api.conventions import DOMAIN, FINALIZER, JOB_LABEL, LAST_HANDLED_ANNOTATION

from .k8s_api import RAY_GROUP, RAYJOBS

ENV_PREFIX = "PRISM_"
CLUSTER_LABEL = "ray.io/cluster"  # KubeRay's label on a RayCluster's pods
DEFAULT_PROGRESS_URL = "http://{service}.{namespace}.svc:{port}{path}"
DEFAULT_DASHBOARD_URL = "http://{service}.{namespace}.svc:8265"
DEFAULT_SERVE_URL = "http://{service}.{namespace}.svc:{port}"
# kopf waits this long for a running timer handler to notice cancellation before it removes the
# finalizer (its default is 60 s, so every `kubectl delete xj` took about a minute).
CANCELLATION_POLLING_SECONDS = 2


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class OperatorConfig:
    # Seconds between reconciles of one live job (PRISM_TIMER_INTERVAL).
    timer_interval: float = 10.0
    # Seconds between checks of one ExtractionCronJob's schedule: how late a run may start
    # (PRISM_CRON_INTERVAL). A check reads the operator's watch-fed index, not the API.
    cron_interval: float = 5.0
    # Where a job's progress endpoint is; {service}, {namespace}, {port}, {path} are filled in
    # (PRISM_PROGRESS_URL_TEMPLATE).
    progress_url_template: str = DEFAULT_PROGRESS_URL
    # Timeout of one progress read, seconds (PRISM_PROGRESS_TIMEOUT).
    progress_timeout: float = 3.0
    # The Ray dashboard of a job's RayCluster, used to stop and confirm an attempt's Ray job;
    # {service} (the head Service) and {namespace} are filled in (PRISM_DASHBOARD_URL_TEMPLATE).
    dashboard_url_template: str = DEFAULT_DASHBOARD_URL
    # Timeout of one dashboard request, seconds (PRISM_DASHBOARD_TIMEOUT).
    dashboard_timeout: float = 5.0
    # Seconds between checks of one SearchService against its RayService (PRISM_SEARCH_INTERVAL). A
    # check reads the operator's watch-fed index of RayServices, never the API, and writes status only
    # when it changed: an idle SearchService costs no API request.
    search_interval: float = 5.0
    # A SearchService's Serve endpoint (GET /info); {service} (`<name>-serve-svc`), {namespace} and
    # {port} are filled in (PRISM_SERVE_URL_TEMPLATE). Its running replicas are read from the Ray
    # dashboard of `<name>-head-svc` (PRISM_DASHBOARD_URL_TEMPLATE).
    serve_url_template: str = DEFAULT_SERVE_URL
    # Timeout of one read of a SearchService's application, seconds (PRISM_SERVE_TIMEOUT).
    serve_timeout: float = 5.0
    # Timeout of one Kubernetes API request, seconds (PRISM_API_TIMEOUT).
    api_timeout: float = 15.0
    # Kubernetes API requests in flight at once: worker threads and pooled connections of the
    # (synchronous) client. The default executor's min(32, cores + 4) threads and urllib3's 4
    # connections queued reconciles behind each other with hundreds of jobs (PRISM_API_CONCURRENCY).
    api_concurrency: int = 16
    # Operator metrics server: /metrics on this host and port; port 0 picks a free one
    # (PRISM_METRICS_ENABLED, PRISM_METRICS_HOST, PRISM_METRICS_PORT).
    metrics_enabled: bool = True
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9100
    # kopf's retry delay after a handler error, seconds (PRISM_RETRY_BACKOFF).
    retry_backoff: float = 10.0
    # Seconds a watch request stays open before kopf re-lists (PRISM_WATCH_TIMEOUT). An int: kopf
    # sends it as `timeoutSeconds`, and the API server answers `300.0` with 400 (strconv.ParseInt).
    watch_timeout: int = 300

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key not in env:
                continue
            raw = env[key]
            kind = type(f.default)
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError:
                raise ConfigError(f"{key}: must be {kind.__name__} (got {raw!r})") from None
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        try:
            self.serve_url_template.format(service="s", namespace="n", port=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{ENV_PREFIX}SERVE_URL_TEMPLATE: bad placeholder {exc} (allowed: "
                              "{service} {namespace} {port})") from None
        for name in ("timer_interval", "cron_interval", "progress_timeout", "dashboard_timeout", "api_timeout", "retry_backoff",
                     "watch_timeout", "search_interval", "serve_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}: must be > 0 (got {getattr(self, name)})")
        if type(self.watch_timeout) is not int:
            raise ConfigError(f"{ENV_PREFIX}WATCH_TIMEOUT: must be whole seconds (got {self.watch_timeout!r})")
        if not 1 <= self.api_concurrency <= 256:
            raise ConfigError(f"{ENV_PREFIX}API_CONCURRENCY: must be 1-256 (got {self.api_concurrency})")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"{ENV_PREFIX}METRICS_PORT: must be 0-65535 (got {self.metrics_port})")
        try:
            self.progress_url_template.format(service="s", namespace="n", port=1, path="/p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{ENV_PREFIX}PROGRESS_URL_TEMPLATE: bad placeholder {exc} (allowed: "
                              "{service} {namespace} {port} {path})") from None
        try:
            self.dashboard_url_template.format(service="s", namespace="n")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{ENV_PREFIX}DASHBOARD_URL_TEMPLATE: bad placeholder {exc} (allowed: "
                              "{service} {namespace})") from None


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base as a digest, not a copy of the spec.

    kopf keeps the last handled spec in an annotation to tell what changed. A copy of a large spec,
    beside kubectl's own last-applied copy, overflowed the API server's 256 KiB annotation limit:
    every patch of the job was refused with 422 and kopf looped on the error (tests/cluster). The
    handlers only need to know *that* the spec changed (every reconcile reads the whole body), so a
    digest of the essence is stored; an unchanged body is recognised by its digest, and a changed
    one reads as "everything changed".
    """

    def store(self, *, body, patch, essence) -> None:
        super().store(body=body, patch=patch, essence={"sha256": _digest(essence)})

    def fetch(self, *, body):
        stored = super().fetch(body=body)
        if stored is None:
            return None
        current = self.build(body=body)
        return current if stored.get("sha256") == _digest(current) else {}


def _digest(essence) -> str:
    return hashlib.sha256(json.dumps(essence, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # kopf's bookkeeping goes to annotations: status belongs to the ExtractionJob's users (docs/design.md §3).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=DOMAIN)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(
        prefix=DOMAIN, key=LAST_HANDLED_ANNOTATION.removeprefix(DOMAIN + "/"))
    settings.persistence.finalizer = FINALIZER
    # Events come from our own explicit calls; kopf's handler log lines would flood `kubectl describe`.
    settings.posting.level = logging.ERROR
    settings.execution.default_backoff = config.retry_backoff
    # kopf's own API calls (patches, events): the same bound as ours, with room for its retries.
    settings.networking.connect_timeout = config.api_timeout
    settings.networking.request_timeout = config.api_timeout * 4
    # Bounded watch requests: a silently dropped connection is noticed within this time. Whole
    # seconds: kopf puts server_timeout into the query as `timeoutSeconds`, which must be an integer.
    settings.watching.server_timeout = int(config.watch_timeout)
    settings.watching.client_timeout = int(config.watch_timeout) + 30
    # The children's watches (handlers.py indexes): the server sends only Prism's RayJobs and the Pods of
    # Prism's RayClusters (KubeRay labels pods ray.io/cluster; the cluster's pod templates carry JOB_LABEL).
    settings.watching.label_selectors[RAY_GROUP, RAYJOBS] = JOB_LABEL
    settings.watching.label_selectors["v1", "pods"] = f"{JOB_LABEL},{CLUSTER_LABEL}"
    # Deleting a job waits for its running timer to stop: poll for that often, not every 60 s.
    settings.background.cancellation_polling = CANCELLATION_POLLING_SECONDS
    # On SIGTERM, let a reconcile in flight finish its API calls (each bounded by api_timeout)
    # instead of orphaning it: an orphaned timer then hit the closed API client and logged an
    # ERROR at every shutdown on the real API server (tests/cluster).
    settings.background.instant_exit_timeout = config.api_timeout + 5
