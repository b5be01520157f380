"""The only module that talks to the Kubernetes API (besides kopf itself, which watches and patches
ExtractionJobs). Every call has a timeout; a failed call is counted and reported to the caller,
and the next reconcile (one timer interval later) is its bounded retry.

The official client is synchronous, so each call runs in a worker thread of the API's own bounded
pool, with as many pooled connections as threads.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from prism_api import GROUP, PLURAL, VERSION

from . import operator_metrics as metrics

log = logging.getLogger(__name__)

RAY_GROUP, RAY_VERSION = "ray.io", "v1"
RAYCLUSTERS, RAYJOBS, RAYSERVICES = "rayclusters", "rayjobs", "rayservices"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeApiError(RuntimeError):
    """A Kubernetes API call failed (other than the expected 404/409)."""


class NamespaceTerminating(Exception):
    """The namespace is being deleted: nothing can be created in it, and the job goes with it."""


def _namespace_terminating(exc: ApiException) -> bool:
    """The API server refuses creates in a namespace being deleted (403 "...because it is being
    terminated"): the job goes with its namespace, so there is nothing to retry."""
    return exc.status == 403 and "being terminated" in _short(exc.body)


def load_client_config(concurrency: int = 16) -> client.ApiClient:
    """In-cluster service account when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # The client reads KUBECONFIG once, at import; read it now.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
    configuration.connection_pool_maxsize = concurrency
    return client.ApiClient(configuration)


class KubeApi:
    def __init__(self, api_client: client.ApiClient, timeout: float, concurrency: int = 16):
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="prism-api")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, operation: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs["_request_timeout"] = self._timeout
        try:
            call = functools.partial(fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except ApiException as exc:
            if exc.status in (404, 409) or _namespace_terminating(exc):
                raise
            metrics.API_ERRORS.labels(operation=operation).inc()
            raise KubeApiError(f"{operation}: HTTP {exc.status} {exc.reason}: {_short(exc.body)}") from None
        except Exception as exc:  # connection refused, timeouts, TLS: all count as API errors
            metrics.API_ERRORS.labels(operation=operation).inc()
            raise KubeApiError(f"{operation}: {type(exc).__name__}: {exc}") from None

    async def _get(self, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return await self._call(f"get {plural}", self._custom.get_namespaced_custom_object,
                                    RAY_GROUP, RAY_VERSION, namespace, plural, name)
        except ApiException:  # 404 (409 cannot happen on GET)
            return None

    async def get_ray_cluster(self, namespace: str, name: str) -> dict | None:
        return await self._get(RAYCLUSTERS, namespace, name)

    async def get_ray_job(self, namespace: str, name: str) -> dict | None:
        return await self._get(RAYJOBS, namespace, name)

    async def _create(self, group: str, version: str, plural: str, obj: dict, missing: str) -> Any:
        """A custom object: the created object as the server answered, or None if it already exists
        (children's names are deterministic, so an existing one is what a previous reconcile or operator
        instance created); `missing` explains a 404."""
        return await self._created(plural, obj, missing, self._custom.create_namespaced_custom_object,
                                   group, version, obj["metadata"]["namespace"], plural, obj)

    async def _created(self, plural: str, obj: dict, missing: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the create call `fn(*args)`: its response; None on 409 (it exists); NamespaceTerminating,
        or KubeApiError."""
        namespace = obj["metadata"]["namespace"]
        try:
            created = await self._call(f"create {plural}", fn, *args)
        except ApiException as exc:
            if exc.status == 409:
                return None
            if _namespace_terminating(exc):
                raise NamespaceTerminating(namespace) from None
            raise KubeApiError(f"create {plural} {namespace}/{obj['metadata']['name']}: HTTP {exc.status}: "
                               f"{missing if exc.status == 404 and missing else _short(exc.body)}") from None
        return created if created is not None else obj

    async def create(self, obj: dict) -> bool:
        """Create a RayCluster, RayJob or RayService; False if it already exists."""
        return await self.create_child(obj) is not None

    async def create_child(self, obj: dict) -> dict | None:
        """Create a RayCluster, RayJob or RayService: the object as the API server stored it (the truth
        until the watch shows it), or None if it already exists."""
        plural = {"RayCluster": RAYCLUSTERS, "RayJob": RAYJOBS, "RayService": RAYSERVICES}[obj["kind"]]
        created = await self._create(RAY_GROUP, RAY_VERSION, plural, obj, "is KubeRay installed (ray.io/v1 CRDs)?")
        return None if created is None else (created if isinstance(created, dict) else obj)

    async def suspend_ray_cluster(self, namespace: str, name: str, suspend: bool) -> None:
        try:
            await self._call("patch rayclusters", self._custom.patch_namespaced_custom_object,
                             RAY_GROUP, RAY_VERSION, namespace, RAYCLUSTERS, name, {"spec": {"suspend": suspend}},
                             _content_type=MERGE_PATCH)
        except ApiException:
            pass  # gone: nothing to suspend

    async def patch_ray_service(self, namespace: str, name: str, patch: dict) -> bool:
        """A merge patch of a RayService (a SearchService's spec change); False if it is gone."""
        try:
            await self._call("patch rayservices", self._custom.patch_namespaced_custom_object,
                             RAY_GROUP, RAY_VERSION, namespace, RAYSERVICES, name, patch, _content_type=MERGE_PATCH)
        except ApiException as exc:
            if _namespace_terminating(exc):
                raise NamespaceTerminating(namespace) from None
            return False  # 404: gone (the next reconcile creates it again)
        return True

    async def scale_workers_to_zero(self, namespace: str, name: str, groups: tuple[str, ...]) -> None:
        """replicas and minReplicas 0 on each worker group. A JSON patch that first tests each group's
        name at its index: a RayCluster changed since it was read is refused (422) and read again."""
        ops: list[dict] = []
        for i, group in enumerate(groups):
            path = f"/spec/workerGroupSpecs/{i}"
            ops += [{"op": "test", "path": f"{path}/groupName", "value": group},
                    {"op": "add", "path": f"{path}/replicas", "value": 0},
                    {"op": "add", "path": f"{path}/minReplicas", "value": 0}]
        if not ops:
            return
        try:
            await self._call("patch rayclusters", self._custom.patch_namespaced_custom_object,
                             RAY_GROUP, RAY_VERSION, namespace, RAYCLUSTERS, name, ops, _content_type=JSON_PATCH)
        except ApiException:
            pass  # gone: nothing to scale

    async def get_config_map(self, namespace: str, name: str) -> dict | None:
        try:
            response = await self._call("get configmaps", self._core.read_namespaced_config_map, name, namespace,
                                        _preload_content=False)
        except ApiException:  # 404
            return None
        return json.loads(response.data)

    async def create_config_map(self, obj: dict) -> bool:
        """False if one of that name exists already."""
        return await self._created("configmaps", obj, "", self._core.create_namespaced_config_map,
                                   obj["metadata"]["namespace"], obj) is not None

    async def _delete(self, plural: str, namespace: str, name: str, group: str = RAY_GROUP,
                      version: str = RAY_VERSION) -> bool:
        try:
            await self._call(f"delete {plural}", self._custom.delete_namespaced_custom_object,
                             group, version, namespace, plural, name, propagation_policy="Background")
        except ApiException:
            return False  # already gone
        return True

    async def delete_ray_job(self, namespace: str, name: str) -> bool:
        return await self._delete(RAYJOBS, namespace, name)

    async def delete_ray_cluster(self, namespace: str, name: str) -> bool:
        return await self._delete(RAYCLUSTERS, namespace, name)

    async def create_extraction_job(self, obj: dict) -> bool:
        """Create an ExtractionJob (a scheduled run); False if it already exists (run names are
        deterministic: an existing one was created for the same scheduled time)."""
        return await self._create(GROUP, VERSION, PLURAL, obj, "is the ExtractionJob CRD installed?") is not None

    async def delete_extraction_job(self, namespace: str, name: str) -> bool:
        """Delete a run (its finalizer stops its Ray job; its RayCluster goes with it)."""
        return await self._delete(PLURAL, namespace, name, GROUP, VERSION)

    async def list_cluster_pods(self, namespace: str, cluster: str) -> list[dict]:
        """Pods of a RayCluster (KubeRay labels them ray.io/cluster)."""
        selector = f"ray.io/cluster={cluster}"
        try:
            response = await self._call("list pods", self._core.list_namespaced_pod, namespace,
                                        label_selector=selector, _preload_content=False)
        except ApiException:
            return []
        items = json.loads(response.data).get("items") or []
        # The selector is applied again here: a server that ignored it must not mix in other pods.
        return [p for p in items if (p.get("metadata", {}).get("labels") or {}).get("ray.io/cluster") == cluster]

    @staticmethod
    def post_event(body: Any, type_: str, reason: str, message: str) -> None:
        """Queue an Event on the ExtractionJob (kopf posts it in the background, bounded)."""
        kopf.event(body, type=type_, reason=reason, message=message[:1024])


def _short(body: Any) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        return json.loads(text).get("message", text)[:300]
    except (ValueError, AttributeError):
        return text[:300]
