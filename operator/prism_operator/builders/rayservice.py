"""The RayService a SearchService owns: KubeRay runs the Serve application (SERVE_IMPORT_PATH with
ServeAppArgs) on a RayCluster it creates and names `<name>-<5 random>`, and fronts it with the Services
`<name>-head-svc` and `<name>-serve-svc` (port SERVE_HTTP_PORT). Pure: a SearchService in, a dict out.

The cluster is built as an ExtractionJob's RayCluster is (builders/raycluster.py): a zero-CPU head that
only schedules (Serve's controller and proxies need no CPU), autoscaled worker groups, Secrets by
reference. The replicas' worker groups never advertise the `batch` resource and no replica asks for it, so
a batch job's stages never land on them; `batchWorkerGroups` (if any) advertise it, for ExtractionJobs run
on this cluster (cluster.existing), e.g. with Serve-backed extractors.

`serveConfigV2` (a YAML string, as KubeRay wants it) holds one application; the per-deployment settings
travel in its `args` (the application applies them) and are mirrored in `deployments[]` so Serve's own
config, `kubectl get rayservice -o yaml` and the dashboard show them.
"""

from __future__ import annotations

import yaml

from prism_api.conventions import BATCH_RESOURCE, DOMAIN, ENV_QDRANT_API_KEY, MANAGED_BY
from prism_api.job_spec import WorkerGroup
from prism_api.search_service import (
    SEARCH_KIND,
    SERVE_APP_NAME,
    SERVE_HTTP_PORT,
    SERVE_IMPORT_PATH,
    SearchService,
    ServeCluster,
    ServeDeployment,
)

from .raycluster import (
    HEAD_CONTAINER,
    RAY_API_VERSION,
    WORKER_CONTAINER,
    autoscaler_options,
    container,
    head_ports,
    worker_pod_spec,
)

# On the RayService (and, as KubeRay copies a RayService's labels, on its RayCluster and pods).
SEARCH_LABEL = f"{DOMAIN}/search-service"
# The SearchService generation the RayService's spec was built from: a SearchService whose generation
# differs has a spec change the RayService has not been given yet.
SOURCE_GENERATION_ANNOTATION = f"{DOMAIN}/search-service-generation"
SERVE_PORT_NAME = "serve"  # KubeRay puts the head's `serve` port on `<name>-serve-svc`


def rayservice_name(service: SearchService) -> str:
    """The RayService has the SearchService's name (MAX_SEARCH_NAME_LENGTH leaves KubeRay room)."""
    return service.metadata.name


def serve_service_name(name: str) -> str:
    return f"{name}-serve-svc"


def head_service_name(name: str) -> str:
    return f"{name}-head-svc"


def endpoint(name: str, namespace: str) -> str:
    """The application's HTTP endpoint inside the cluster."""
    return f"http://{serve_service_name(name)}.{namespace}.svc:{SERVE_HTTP_PORT}"


def search_labels(service: SearchService, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "prism",
        "app.kubernetes.io/instance": service.metadata.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "prism",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SEARCH_LABEL: service.metadata.name,
    }


def owner_reference(service: SearchService) -> dict:
    """The SearchService as controller owner: Kubernetes GC removes the RayService with it."""
    if not service.metadata.uid:
        raise ValueError(f"SearchService {service.metadata.name} has no metadata.uid; owner references need one")
    return {"apiVersion": service.api_version, "kind": SEARCH_KIND, "name": service.metadata.name,
            "uid": service.metadata.uid, "controller": True, "blockOwnerDeletion": True}


def deployment_override(deployment: ServeDeployment) -> dict:
    """One deployment's entry in serveConfigV2 `deployments[]`: the options the application gives it
    (ServeDeployment.serve_options), so Serve's config and `kubectl get rayservice -o yaml` show them."""
    return deployment.serve_options()


def serve_config(service: SearchService) -> dict:
    """serveConfigV2, as a dict (build_ray_service writes it as YAML)."""
    spec = service.spec
    app = {
        "name": SERVE_APP_NAME,
        "import_path": SERVE_IMPORT_PATH,
        "route_prefix": "/",
        "args": spec.app_args().to_wire(),
    }
    if spec.deployments:
        app["deployments"] = [deployment_override(d) for d in spec.deployments]
    return {"http_options": {"host": "0.0.0.0", "port": SERVE_HTTP_PORT}, "applications": [app]}


def secret_env(service: SearchService) -> list[dict]:
    """QDRANT_API_KEY from the Secret, by reference: the value is never read."""
    ref = service.spec.qdrant.api_key_secret_ref
    if ref is None:
        return []
    return [{"name": ENV_QDRANT_API_KEY, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def _worker_group(cluster: ServeCluster, group: WorkerGroup, env: list[dict], labels: dict[str, str],
                  batch: int | None) -> dict:
    worker = container(WORKER_CONTAINER, cluster.image, cluster.image_pull_policy, group.cpu, group.memory,
                       gpus=group.gpus, env=env)
    spec = {
        "groupName": group.name,
        "replicas": group.min_replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": {},
        "template": {"metadata": {"labels": labels}, "spec": worker_pod_spec(group, worker)},
    }
    if batch is not None:
        spec["resources"] = {BATCH_RESOURCE: str(batch)}
    return spec


def ray_cluster_config(service: SearchService) -> dict:
    cluster = service.spec.cluster
    env = secret_env(service)
    labels = {SEARCH_LABEL: service.metadata.name}
    head = container(HEAD_CONTAINER, cluster.image, cluster.image_pull_policy, cluster.head.cpu, cluster.head.memory,
                     ports=head_ports({"name": SERVE_PORT_NAME, "containerPort": SERVE_HTTP_PORT}), env=env)
    # The replicas' groups advertise no `batch` (group resources or rayStartParams): batch stages never fit
    # there. Batch groups (as an ExtractionJob's RayCluster's) do: every batch stage asks for a share of it.
    workers = [_worker_group(cluster, group, env, labels, batch=None) for group in cluster.worker_groups]
    workers += [_worker_group(cluster, group, env, labels, batch=cluster.batch_resource)
                for group in cluster.batch_worker_groups]
    return {
        "rayVersion": cluster.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": autoscaler_options(),
        "headGroupSpec": {
            # The head schedules and proxies; Serve replicas and the ingress run on the workers.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [head]}},
        },
        "workerGroupSpecs": workers,
    }


def build_ray_service(service: SearchService) -> dict:
    name = rayservice_name(service)
    meta = service.metadata
    metadata: dict = {"name": name, "labels": search_labels(service, "ray-service"),
                      "annotations": {SOURCE_GENERATION_ANNOTATION: str(meta.generation or 0)}}
    if meta.namespace:
        metadata["namespace"] = meta.namespace
    if meta.uid:
        metadata["ownerReferences"] = [owner_reference(service)]
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayService",
        "metadata": metadata,
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(service), sort_keys=False),
            "rayClusterConfig": ray_cluster_config(service),
        },
    }


def ray_service_patch(service: SearchService) -> dict:
    """The merge patch that gives an existing RayService this SearchService's current spec. Every list
    in rayClusterConfig is replaced whole and its maps always carry the same keys, so the merge leaves
    nothing of the previous spec behind."""
    built = build_ray_service(service)
    return {"metadata": {"labels": built["metadata"]["labels"], "annotations": built["metadata"]["annotations"]},
            "spec": built["spec"]}
