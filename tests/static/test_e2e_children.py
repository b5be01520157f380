"""What the operator will create for the e2e jobs: valid KubeRay objects, small enough for the kind
node the README asks for, and RayJobs whose metadata lets FailFirstAttempt find its attempt."""

from __future__ import annotations

import copy
import json
import sys

import pytest

from prism_api import parse_job
from prism_operator.builders import build_ray_cluster, build_ray_job

from .kuberay import KUBERAY_CRDS, kuberay_validator
from .repo_files import ROOT, documents, rel, repo_files

sys.path.insert(0, str(ROOT / "e2e" / "plugins"))
from prism_e2e.extractors import RAY_JOB_CONFIG_ENV, current_attempt  # noqa: E402

# One job's share of the kind node (README: 6 CPUs, 12 GiB for everything): the RayCluster at its
# largest (RayJobs use HTTPMode: no submitter pod).
JOB_CPU_BUDGET = 4.0
JOB_MEMORY_BUDGET_GI = 9.0
JOBS = [p for p in repo_files("e2e/manifests/jobs/*.yaml")]


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_gi(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "M": 1e6 / 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**30


def job_of(path) -> object:
    doc = copy.deepcopy(documents(path)[0])
    doc["metadata"]["uid"] = "8d3c6f5e-0000-4000-8000-000000000001"
    return parse_job(doc, target="cluster")


@pytest.mark.parametrize("path", JOBS, ids=rel)
def test_children_validate_against_kuberay(path):
    if not KUBERAY_CRDS.is_dir():
        pytest.skip(f"{KUBERAY_CRDS} is absent: cannot check against KubeRay's CRDs")
    job = job_of(path)
    for obj in (build_ray_cluster(job), build_ray_job(job, 1), build_ray_job(job, 2)):
        errors = [e.message for e in kuberay_validator(obj["kind"]).iter_errors(obj)]
        assert not errors, f"{rel(path)}: {obj['kind']}: {errors}"


@pytest.mark.parametrize("path", JOBS, ids=rel)
def test_job_fits_the_kind_node(path):
    cluster = build_ray_cluster(job_of(path))["spec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    total_cpu, total_mem = cpu(head["cpu"]), memory_gi(head["memory"])
    for group in cluster["workerGroupSpecs"]:
        requests = group["template"]["spec"]["containers"][0]["resources"]["requests"]
        total_cpu += cpu(requests["cpu"]) * group["maxReplicas"]
        total_mem += memory_gi(requests["memory"]) * group["maxReplicas"]
        assert group["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert total_cpu <= JOB_CPU_BUDGET, f"{rel(path)} asks for {total_cpu} CPUs; e2e/README.md promises less"
    assert total_mem <= JOB_MEMORY_BUDGET_GI, f"{rel(path)} asks for {total_mem:.1f} GiB"


@pytest.mark.parametrize("attempt", [1, 2])
def test_fail_first_attempt_reads_the_attempt_the_operator_sets(attempt):
    """Ray's job supervisor gives the driver the RayJob's spec.metadata plus the submission id (jobId)."""
    ray_job = build_ray_job(job_of(ROOT / "e2e" / "manifests" / "jobs" / "retry.yaml"), attempt)["spec"]
    metadata = {**ray_job.get("metadata", {}), "job_submission_id": ray_job["jobId"]}
    env = {RAY_JOB_CONFIG_ENV: json.dumps({"runtime_env": {}, "metadata": metadata})}
    assert current_attempt(env) == attempt
    without_label = {k: v for k, v in metadata.items() if k != "prism.dev/attempt"}
    assert current_attempt({RAY_JOB_CONFIG_ENV: json.dumps({"metadata": without_label})}) == attempt
