"""Deployment artefacts: the kustomize base renders and holds valid objects, its CRD copy matches
crds/, and the Deployment, Service, ServiceMonitor and Dockerfile agree with each other."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize manifests/` cannot be checked here")
    result = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_kustomize_renders_the_operator(rendered):
    assert set(rendered) == {
        "Namespace/prism-system", "CustomResourceDefinition/extractionjobs.prism.dev",
        "CustomResourceDefinition/extractioncronjobs.prism.dev", "CustomResourceDefinition/searchservices.prism.dev",
        "ServiceAccount/prism-operator", "ClusterRole/prism-operator", "ClusterRoleBinding/prism-operator",
        "Deployment/prism-operator", "Service/prism-operator-metrics",
    }
    for key in ("ServiceAccount/prism-operator", "Deployment/prism-operator", "Service/prism-operator-metrics"):
        assert rendered[key]["metadata"]["namespace"] == "prism-system", key
    binding = rendered["ClusterRoleBinding/prism-operator"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prism-operator", "namespace": "prism-system"}]
    assert binding["roleRef"]["name"] == "prism-operator"


def test_core_objects_are_valid_kubernetes(rendered):
    version = kubernetes_validate.latest_version()
    for obj in rendered.values():
        if obj["kind"] == "CustomResourceDefinition":
            continue  # checked against crds/ below and by the spec tests
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("name", ["extractionjob.yaml", "extractioncronjob.yaml", "searchservice.yaml"])
def test_crd_copy_matches_crds_folder(name):
    copy = (MANIFESTS / "crd" / name).read_text()
    source = (REPO / "crds" / name).read_text()
    assert copy == source, f"manifests/crd/{name} is stale: run `make crd`"


def test_kustomize_carries_every_crd(rendered):
    """A kind added to crds/ (and `prism crd`) is in the base too, or `kubectl apply -k` leaves it out."""
    crds = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "crds").glob("*.yaml")}
    assert {k.split("/", 1)[1] for k in rendered if k.startswith("CustomResourceDefinition/")} == crds


def test_deployment_is_unprivileged_with_probes(rendered):
    pod = rendered["Deployment/prism-operator"]["spec"]["template"]["spec"]
    assert rendered["Deployment/prism-operator"]["spec"]["strategy"]["type"] == "Recreate"
    assert pod["serviceAccountName"] == "prism-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"]["path"] == "/healthz" and probe["httpGet"]["port"] == "healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["PRISM_METRICS_PORT"]) == ports["metrics"]

    # The image's kopf liveness endpoint is where the probes look.
    entrypoint = dockerfile_entrypoint()
    liveness = next(a for a in entrypoint if a.startswith("--liveness="))
    assert re.fullmatch(rf"--liveness=http://0\.0\.0\.0:{ports['healthz']}/healthz", liveness)

    service = rendered["Service/prism-operator-metrics"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": ports["metrics"], "targetPort": "metrics"}]
    assert set(service["spec"]["selector"].items()) <= set(
        rendered["Deployment/prism-operator"]["spec"]["template"]["metadata"]["labels"].items())


def test_servicemonitor_example_scrapes_the_metrics_service(rendered):
    monitor = yaml.safe_load((MANIFESTS / "monitoring" / "servicemonitor.yaml").read_text())
    service = rendered["Service/prism-operator-metrics"]
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]


def dockerfile_entrypoint() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert match, "Dockerfile has no exec-form ENTRYPOINT"
    return yaml.safe_load(match.group(1))


def test_dockerfile_is_multistage_non_root_kopf_run():
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2 and "COPY --from=build" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoint = dockerfile_entrypoint()
    assert entrypoint[:2] == ["kopf", "run"] and "--standalone" in entrypoint
    module = entrypoint[entrypoint.index("-m") + 1]
    assert module == "prism_operator.kopf_main"
    assert (REPO / "operator" / Path(*module.split("."))).with_suffix(".py").is_file()
    # Everything the image installs from must be in the build context.
    ignore = (REPO / "Dockerfile.dockerignore").read_text()
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in copied.split():
            assert f"!{path.rstrip('/')}" in ignore.replace("/\n", "\n"), path
