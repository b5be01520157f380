"""The Helm chart on the real API server. Every object the chart renders (default and non-default
values) is accepted by a server-side dry run under strict field validation; `helm install` of a
release into a fresh namespace creates them all, as rendered; `helm uninstall` removes them again,
cluster-scoped ones included. The chart's CRDs are the ones the tier installed from manifests/ (helm
finds them present and skips them, as it does on any cluster that already has them).

No operator runs: kwok plays the kubelet, so the chart's Deployment never pulls or starts an image.
The ServiceMonitor is left out (this control plane has no Prometheus Operator CRDs); its rendering is
checked in tests/static/test_helm_chart.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.static.test_helm_chart import CHART, CUSTOM_VALUES, Helm, key, require_helm

NO_MONITOR = "metrics.serviceMonitor.enabled=false"


@pytest.fixture
def helm(tmp_path) -> Helm:
    return Helm(require_helm(), tmp_path / "helm-home")


def strict_dry_run(kubectl, objects: dict[str, dict]):
    text = "\n---\n".join(yaml.safe_dump(o) for o in objects.values())
    return kubectl.run("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=text, check=False)


@pytest.mark.parametrize("path", sorted((CHART / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_chart_crd_is_the_installed_one(admin, path):
    """The API server accepts the chart's CRD, and applying it over the one the tier installed from
    manifests/ changes nothing."""
    installed = admin.json("get", "crd", yaml.safe_load(path.read_text())["metadata"]["name"])
    proc = admin.run("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-o", "json", "-f", "-",
                     stdin=path.read_text(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"] == installed["spec"]


@pytest.mark.parametrize("values", [[], [str(CUSTOM_VALUES), NO_MONITOR]], ids=["defaults", "custom"])
def test_server_accepts_every_rendered_object(helm, kubectl, namespace, values):
    objects = helm.template(*values, release=f"dry-{namespace[-5:]}", namespace=namespace, crds=False)
    assert {o["kind"] for o in objects.values()} >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                                     "Deployment", "Service"}
    proc = strict_dry_run(kubectl, objects)
    assert proc.returncode == 0, proc.stderr
    assert "unknown field" not in proc.stderr, proc.stderr


def test_helm_install_and_uninstall(helm, admin, kubectl, namespace, control_plane):
    release = f"prism-operator-{namespace[-5:]}"
    base = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace]
    rendered = helm.template(str(CUSTOM_VALUES), NO_MONITOR, release=release, namespace=namespace, crds=False)
    try:
        proc = helm.run("install", release, str(CHART), *base, "--values", str(CUSTOM_VALUES), "--set", NO_MONITOR,
                        timeout=180)
        assert "STATUS: deployed" in proc.stdout, proc.stdout

        manifest = [d for d in yaml.safe_load_all(helm.run("get", "manifest", release, *base).stdout) if d]
        assert {key(d) for d in manifest} == set(rendered)
        for name, want in rendered.items():
            kind, obj_name = name.split("/", 1)
            live = (admin if kind.startswith("Cluster") else kubectl).get(kind, obj_name)
            assert live is not None, f"{name} was not created"
            assert live["metadata"]["labels"]["app.kubernetes.io/instance"] == release, name
            assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == release, name
            # Nothing the chart sets was pruned or rewritten on the way in.
            for field in ("rules", "subjects", "roleRef", "data"):
                if field in want:
                    assert live[field] == want[field], f"{name}.{field}"
        live_pod = kubectl.get("deployment", release)["spec"]["template"]["spec"]
        want_pod = rendered[f"Deployment/{release}"]["spec"]["template"]["spec"]
        for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets",
                      "serviceAccountName", "securityContext"):
            assert live_pod[field] == want_pod[field], field
        live_container, want_container = live_pod["containers"][0], want_pod["containers"][0]
        for field in ("image", "command", "args", "env", "resources", "securityContext"):
            assert live_container[field] == want_container[field], field
        # The server fills in each port's default protocol.
        assert live_container["ports"] == [{**p, "protocol": "TCP"} for p in want_container["ports"]]
        service = kubectl.get("service", f"{release}-metrics")
        assert service["spec"]["ports"][0]["port"] == 9200 and service["spec"]["clusterIP"]
    finally:
        uninstall = helm.run("uninstall", release, *base, "--wait", "--timeout", "60s", check=False, timeout=120)
    assert uninstall.returncode == 0, uninstall.stderr
    assert admin.get("clusterrole", release) is None
    assert admin.get("clusterrolebinding", release) is None
    assert kubectl.get("deployment", release) is None
    assert kubectl.get("configmap", f"{release}-dashboard") is None
    # helm never deletes what it installed from crds/ (and these CRDs predate the release).
    for path in (CHART / "crds").glob("*.yaml"):
        assert admin.get("crd", yaml.safe_load(path.read_text())["metadata"]["name"]) is not None, path.name
