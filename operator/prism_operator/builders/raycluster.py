"""The RayCluster an ExtractionJob owns: a zero-CPU head and autoscaled worker groups.

The head only schedules (num-cpus "0") and serves the pipeline's progress endpoint on a container
port named `progress`, which KubeRay puts on the head Service. Every worker group advertises the
synthetic `batch` resource that every pipeline stage asks for, so stages never land on the head.
"""

from __future__ import annotations

from prism_api import ExtractionJob, ray_cluster_name
from prism_api.conventions import BATCH_RESOURCE, ENV_QDRANT_API_KEY, JOB_LABEL
from prism_api.job_spec import WorkerGroup
from prism_api.progress_report import PROGRESS_PORT, PROGRESS_PORT_NAME

from .labels import KUEUE_ELASTIC_JOB_ANNOTATION, KUEUE_QUEUE_LABEL, child_metadata

RAY_API_VERSION = "ray.io/v1"
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
GPU_RESOURCE = "nvidia.com/gpu"
# Scale idle workers down after a minute: extraction stages are bursty between files.
AUTOSCALER_IDLE_TIMEOUT_SECONDS = 60


def cluster_name_for(job: ExtractionJob) -> str:
    """The RayCluster the job runs on: `cluster.existing`, or the owned one's deterministic name."""
    return job.spec.cluster.existing or owned_cluster_name(job)


def owned_cluster_name(job: ExtractionJob) -> str:
    m = job.metadata
    return ray_cluster_name(m.namespace or "default", m.name, m.uid or "")


def secret_env(job: ExtractionJob) -> tuple[list[dict], list[dict]]:
    """(env, envFrom) that expose the job's Secrets to Ray pods by reference; values are never read."""
    env: list[dict] = []
    env_from: list[dict] = []
    if job.spec.source.secret_ref:
        env_from.append({"secretRef": {"name": job.spec.source.secret_ref.name}})
    key_ref = job.spec.sink.qdrant.api_key_secret_ref
    if key_ref:
        env.append({
            "name": ENV_QDRANT_API_KEY,
            "valueFrom": {"secretKeyRef": {"name": key_ref.name, "key": key_ref.key}},
        })
    return env, env_from


def container(name: str, image: str, pull_policy: str, cpu: str, memory: str, gpus: int = 0,
              ports: list[dict] | None = None, env: list[dict] | None = None,
              env_from: list[dict] | None = None) -> dict:
    """A Ray pod's container: requests equal limits (GPUs as nvidia.com/gpu limits). Shared with the
    SearchService's RayService (builders/rayservice.py)."""
    limits = {"cpu": cpu, "memory": memory}
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    out = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
    }
    if ports:
        out["ports"] = ports
    if env:
        out["env"] = env
    if env_from:
        out["envFrom"] = env_from
    return out


def head_ports(*extra: dict) -> list[dict]:
    """The head container's ports KubeRay puts on the head Service, plus `extra`."""
    return [
        {"name": "gcs-server", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        *extra,
    ]


def worker_pod_spec(group: WorkerGroup, worker: dict) -> dict:
    """A worker group's pod spec: its container plus the group's placement."""
    pod_spec: dict = {"containers": [worker]}
    if group.node_selector:
        pod_spec["nodeSelector"] = dict(group.node_selector)
    if group.tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in group.tolerations]
    return pod_spec


def _container(job: ExtractionJob, name: str, cpu: str, memory: str, gpus: int = 0,
               ports: list[dict] | None = None) -> dict:
    env, env_from = secret_env(job)
    return container(name, job.spec.cluster.image, job.spec.cluster.image_pull_policy, cpu, memory, gpus,
                     ports, env, env_from)


def _head_group(job: ExtractionJob) -> dict:
    head = job.spec.cluster.head
    ports = head_ports({"name": PROGRESS_PORT_NAME, "containerPort": PROGRESS_PORT})
    return {
        # The head schedules and runs the driver; it never takes pipeline work.
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": {
            "metadata": {"labels": {JOB_LABEL: job.metadata.name}},
            "spec": {"containers": [_container(job, HEAD_CONTAINER, head.cpu, head.memory, ports=ports)]},
        },
    }


def _worker_group(job: ExtractionJob, index: int) -> dict:
    group = job.spec.cluster.worker_groups[index]
    pod_spec = worker_pod_spec(group, _container(job, WORKER_CONTAINER, group.cpu, group.memory, gpus=group.gpus))
    return {
        "groupName": group.name,
        "replicas": group.min_replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        # Group-level custom resources (KubeRay >= 1.5): every stage asks for a share of `batch`.
        "resources": {BATCH_RESOURCE: str(job.spec.cluster.batch_resource)},
        "rayStartParams": {},
        "template": {
            "metadata": {"labels": {JOB_LABEL: job.metadata.name}},
            "spec": pod_spec,
        },
    }


def autoscaler_options() -> dict:
    return {"upscalingMode": "Default", "idleTimeoutSeconds": AUTOSCALER_IDLE_TIMEOUT_SECONDS}


def build_ray_cluster(job: ExtractionJob) -> dict:
    """The owned RayCluster (not used with `cluster.existing`)."""
    cluster = job.spec.cluster
    if cluster.existing:
        raise ValueError(f"spec.cluster.existing is {cluster.existing!r}: the job runs on that cluster and "
                         "owns no RayCluster")
    metadata = child_metadata(job, owned_cluster_name(job), "ray-cluster", queue_labels=True)
    autoscaling = True
    if autoscaling and KUEUE_QUEUE_LABEL in metadata["labels"]:
        # Kueue admits an autoscaled RayCluster only as an elastic job (its webhook refuses it otherwise).
        metadata["annotations"] = {KUEUE_ELASTIC_JOB_ANNOTATION: "true"}
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayCluster",
        "metadata": metadata,
        "spec": {
            "rayVersion": cluster.ray_version,
            "enableInTreeAutoscaling": autoscaling,
            "autoscalerOptions": autoscaler_options(),
            "headGroupSpec": _head_group(job),
            "workerGroupSpecs": [_worker_group(job, i) for i in range(len(cluster.worker_groups))],
        },
    }
