"""Kubernetes objects in manifests/, e2e/ and examples/ validate against Kubernetes' own schemas.

Core API groups go through kubernetes-validate (strict: unknown fields fail) at the Kubernetes
version of the e2e kind node. KubeRay objects are checked against KubeRay's CRDs when they are
available (../shared/kuberay-crds); ExtractionJobs have their own test (test_extractionjobs.py);
other custom resources (Argo CD, Prometheus Operator, kind, kustomize) are skipped by name.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from .kuberay import KUBERAY_CRDS, kuberay_validator
from .repo_files import documents, rel, repo_files

# The minor version of the e2e cluster's node image (e2e/versions.env: kindest/node:v1.35.x).
KUBERNETES_VERSION = "1.35.0"
# Custom resources whose schemas live elsewhere; ray.io and prism.dev are validated separately.
NOT_CORE = {"prism.dev", "ray.io", "argoproj.io", "monitoring.coreos.com", "kind.x-k8s.io",
            "kustomize.config.k8s.io", "kueue.x-k8s.io"}
# YAML that is not whole Kubernetes objects: Helm values, and patches (merged into an object).
NOT_OBJECTS = ("e2e/helm/*", "*patch*.yaml", "*patch*.yml")
FILES = [p for p in repo_files("manifests/*.yaml", "e2e/*.yaml", "examples/*.yaml", "manifests/*.yml",
                               "e2e/*.yml", "examples/*.yml")
         if not any(fnmatch.fnmatch(rel(p), pattern) for pattern in NOT_OBJECTS)]


def group_of(obj: dict) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def check_core(obj: dict, where: str) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.absolute_path))
        pytest.fail(f"{where}: {obj['kind']}/{obj.get('metadata', {}).get('name')}: {path}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{where}: Kubernetes {KUBERNETES_VERSION} has no {obj['apiVersion']} {obj['kind']}; "
                    "a custom resource? add its group to NOT_CORE")


def check(obj: dict, where: str) -> None:
    assert isinstance(obj, dict) and obj.get("apiVersion") and obj.get("kind"), (
        f"{where}: every document here must be a Kubernetes object with apiVersion and kind")
    group = group_of(obj)
    if group == "ray.io":
        if not KUBERAY_CRDS.is_dir():
            pytest.skip(f"{KUBERAY_CRDS} is absent: cannot check {obj['kind']} against KubeRay's CRDs")
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in kuberay_validator(obj["kind"]).iter_errors(obj)]
        assert not errors, f"{where}: {obj['kind']} against KubeRay's CRD: {errors}"
    elif group not in NOT_CORE:
        check_core(obj, where)


def test_there_are_core_objects_to_validate():
    kinds = {d.get("kind") for p in FILES for d in documents(p) if group_of(d) not in NOT_CORE}
    assert {"Deployment", "Service", "Secret", "Namespace"} <= kinds, kinds


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_objects_validate(path):
    for i, obj in enumerate(documents(path)):
        check(obj, f"{rel(path)}[{i}]")


KUSTOMIZATIONS = [p.parent for p in repo_files("manifests/kustomization.yaml", "e2e/*kustomization.yaml",
                                                "examples/*kustomization.yaml")]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=rel)
def test_kustomize_output_validates(folder):
    """What `kubectl apply -k` would send: rendered by kustomize, then every object validated."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render kustomizations")
    proc = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {rel(folder)} failed: {proc.stderr}"
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert objects, f"kubectl kustomize {rel(folder)} rendered nothing"
    for obj in objects:
        check(obj, f"kubectl kustomize {rel(folder)}")


def test_validation_rejects_a_broken_object():
    """The check above can fail: a Deployment with a wrong type and an unknown field is refused."""
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    obj["spec"]["replicas"] = 1
    obj["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
