"""The Helm chart (charts/prism-operator) against the kustomize base (manifests/), rendered by the real
helm that scripts/cluster/build.sh builds (HELM_VERSION in scripts/cluster/versions.env).

With default values and release `prism-operator` in `prism-system`, the chart renders the base's
objects field for field, except for the differences normalise() lists: helm's standard labels (and
`app.kubernetes.io/instance` in selectors), the Namespace (helm installs into the release's namespace,
`--create-namespace`), kustomize's `part-of` label on the CRD (helm never templates crds/), and the
order of env entries. Every other difference fails.

Without helm these tests skip and say why; under PRISM_CLUSTER_TIER=require (`make test`) they fail.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import kopf.cli
import pytest
import yaml

from prism_operator.settings import ENV_PREFIX, OperatorConfig
from tests.operator.test_op_manifests import dockerfile_entrypoint

from .test_kubernetes_schemas import check

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prism-operator"
CUSTOM_VALUES = CHART / "ci" / "custom-values.yaml"
RELEASE, NAMESPACE = "prism-operator", "prism-system"
# Labels helm adds to every object; the kustomize base has none of them.
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
               "helm.sh/chart"}
# The kustomization's common label, which reaches the CRD there but not in the chart (crds/ is verbatim).
PART_OF = "app.kubernetes.io/part-of"


def _controlplane():
    """scripts/cluster/controlplane.py, which knows where build.sh puts binaries (as tests/cluster loads it)."""
    if "prism_controlplane" in sys.modules:
        return sys.modules["prism_controlplane"]
    spec = importlib.util.spec_from_file_location("prism_controlplane", REPO / "scripts" / "cluster" / "controlplane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prism_controlplane"] = module
    spec.loader.exec_module(module)
    return module


def helm_path() -> Path:
    """Where scripts/cluster/build.sh puts helm: <cache>/control-plane/helm-<HELM_VERSION>/helm."""
    cp = _controlplane()
    return cp.cache_dir() / f"helm-{cp.VERSIONS['HELM_VERSION']}" / "helm"


def require_helm() -> Path:
    path = helm_path()
    if path.exists():
        return path
    message = f"helm is not built ({path} is missing): run scripts/cluster/build.sh (~4 min cold)"
    if os.environ.get("PRISM_CLUSTER_TIER") == "require":
        pytest.fail(message + " [PRISM_CLUSTER_TIER=require]")
    pytest.skip(message)


def helm_env(home: Path) -> dict[str, str]:
    """helm's cache, config and data in a folder of the test's, never the user's."""
    return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


class Helm:
    def __init__(self, binary: Path, home: Path):
        self.binary, self.env = binary, helm_env(home)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        return proc

    def template(self, *values: str, chart: Path = CHART, release: str = RELEASE, namespace: str = NAMESPACE,
                 crds: bool = True) -> dict[str, dict]:
        """`helm template` -> {kind/name: object}; each of `values` is a values file or a --set expression."""
        args = ["template", release, str(chart), "--namespace", namespace]
        args += ["--include-crds"] if crds else []
        for v in values:
            args += ["--values", v] if v.endswith(".yaml") else ["--set", v]
        docs = [d for d in yaml.safe_load_all(self.run(*args).stdout) if d]
        objects = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
        assert len(objects) == len(docs), f"two objects share a kind and name: {[key(d) for d in docs]}"
        return objects


def key(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def crd_keys() -> set[str]:
    return {key(yaml.safe_load(p.read_text())) for p in (REPO / "crds").glob("*.yaml")}


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> Helm:
    return Helm(require_helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def kustomized() -> dict[str, dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize manifests/` cannot be rendered here")
    proc = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return {key(d): d for d in yaml.safe_load_all(proc.stdout) if d}


@pytest.fixture(scope="module")
def defaults(helm) -> dict[str, dict]:
    return helm.template()


@pytest.fixture(scope="module")
def custom(helm) -> dict[str, dict]:
    return helm.template(str(CUSTOM_VALUES), release="media-ops", namespace="platform")


@pytest.fixture(scope="module")
def custom_values() -> dict:
    return yaml.safe_load(CUSTOM_VALUES.read_text())


# ---- copies the chart holds (helm reads nothing outside its folder); `make crd` writes them ----------

STALE = "is stale: run `make crd` (scripts/sync_generated.py)"


def test_chart_crds_are_the_crds_folder():
    names = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == names, f"charts/prism-operator/crds/ {STALE}"
    for name in names:
        copy_ = (CHART / "crds" / name).read_text()
        assert copy_ == (REPO / "crds" / name).read_text(), f"charts/prism-operator/crds/{name} {STALE}"


@pytest.mark.parametrize(("source", "chart_copy"), [
    ("manifests/rbac/clusterrole.yaml", "files/clusterrole.yaml"),
    ("manifests/monitoring/grafana-dashboard.json", "dashboards/prism.json"),
])
def test_chart_files_are_copies(source, chart_copy):
    source, chart_copy = REPO / source, CHART / chart_copy
    if not source.exists():
        assert not chart_copy.exists(), f"{chart_copy} has no source: {source} is gone; run `make crd`"
        return
    assert chart_copy.exists() and chart_copy.read_text() == source.read_text(), f"{chart_copy} {STALE}"


def test_settings_schema_names_every_operator_setting():
    """values.schema.json accepts exactly the PRISM_* variables OperatorConfig reads, less the two that
    `metrics` sets; a new setting (or a renamed one) fails here until `make crd` writes it there."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    allowed = set(schema["properties"]["settings"]["properties"])
    assert schema["properties"]["settings"]["additionalProperties"] is False
    read = {ENV_PREFIX + f.name.upper() for f in fields(OperatorConfig)}
    assert allowed | {"PRISM_METRICS_ENABLED", "PRISM_METRICS_PORT"} == read, f"values.schema.json {STALE}"
    assert not allowed & {"PRISM_METRICS_ENABLED", "PRISM_METRICS_PORT"}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["settings"]
    OperatorConfig.from_env({k: str(v) for k, v in defaults.items()})  # the defaults parse


# ---- helm itself ------------------------------------------------------------------------------------

def test_helm_is_the_pinned_version(helm):
    version = helm.run("version", "--template", "{{ .Version }}").stdout.strip()
    assert version == _controlplane().VERSIONS["HELM_VERSION"]


@pytest.mark.parametrize("values", [None, CUSTOM_VALUES], ids=["defaults", "custom"])
def test_helm_lint_strict(helm, values):
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    proc = helm.run(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


# ---- defaults: the kustomize base ---------------------------------------------------------------------

def normalise(obj: dict, source: str) -> dict:
    """The object less the differences this module's docstring allows."""
    obj = copy.deepcopy(obj)
    metas = [obj["metadata"]]
    if obj["kind"] == "Deployment":
        metas.append(obj["spec"]["template"]["metadata"])
    for meta in metas:
        labels = meta.get("labels") or {}
        if source == "helm":
            labels = {k: v for k, v in labels.items() if k not in HELM_LABELS}
        elif obj["kind"] == "CustomResourceDefinition":
            labels.pop(PART_OF, None)
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
    if source == "helm":
        selectors = {"Deployment": lambda o: o["spec"]["selector"]["matchLabels"],
                     "Service": lambda o: o["spec"]["selector"]}
        if obj["kind"] in selectors:
            assert selectors[obj["kind"]](obj).pop("app.kubernetes.io/instance") == RELEASE
    if obj["kind"] == "Deployment":
        for container in obj["spec"]["template"]["spec"]["containers"]:
            container["env"] = sorted(container.get("env", []), key=lambda e: e["name"])
    return obj


def test_defaults_render_the_kustomize_base(defaults, kustomized):
    assert set(kustomized) - set(defaults) == {"Namespace/prism-system"}, "kinds/names differ"
    assert set(defaults) - set(kustomized) == set(), "kinds/names differ"
    for name, ours in defaults.items():
        want = normalise(kustomized[name], "kustomize")
        got = normalise(ours, "helm")
        if got != want:
            diff = difflib.unified_diff(yaml.safe_dump(want).splitlines(), yaml.safe_dump(got).splitlines(),
                                        "kustomize", "helm", lineterm="")
            pytest.fail(f"{name}: the chart's defaults differ from manifests/:\n" + "\n".join(diff))


def test_normalise_lets_no_real_difference_through(defaults, kustomized):
    """The comparison above can fail: a changed rule, image, port or namespace is a difference."""
    changes = {
        "ClusterRole/prism-operator": lambda o: o["rules"][0]["verbs"].append("delete"),
        "Deployment/prism-operator": lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
            image="ghcr.io/prism-extract/operator:0.1.1"),
        "Service/prism-operator-metrics": lambda o: o["spec"]["ports"][0].update(port=9101),
        "ServiceAccount/prism-operator": lambda o: o["metadata"].update(namespace="default"),
        "CustomResourceDefinition/extractionjobs.prism.dev": lambda o: o["spec"].update(scope="Cluster"),
    }
    for name, change in changes.items():
        changed = copy.deepcopy(defaults[name])
        change(changed)
        assert normalise(changed, "helm") != normalise(kustomized[name], "kustomize"), name


def test_servicemonitor_matches_the_monitoring_example(helm, defaults):
    monitor = helm.template("metrics.serviceMonitor.enabled=true")["ServiceMonitor/prism-operator"]
    example = yaml.safe_load((REPO / "manifests" / "monitoring" / "servicemonitor.yaml").read_text())
    assert monitor["metadata"]["namespace"] == example["metadata"]["namespace"]
    assert monitor["spec"]["endpoints"] == example["spec"]["endpoints"]
    selector = dict(monitor["spec"]["selector"]["matchLabels"])
    assert selector.pop("app.kubernetes.io/instance") == RELEASE
    assert selector == example["spec"]["selector"]["matchLabels"]
    service = defaults["Service/prism-operator-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_namespaced_objects_follow_the_release_namespace(helm):
    objects = helm.template(namespace="ml-platform", crds=False)
    for name, obj in objects.items():
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in obj["metadata"], name
        else:
            assert obj["metadata"]["namespace"] == "ml-platform", name
    (subject,) = objects["ClusterRoleBinding/prism-operator"]["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "prism-operator", "namespace": "ml-platform"}


def test_other_release_names_prefix_every_object(helm):
    objects = helm.template(release="ops", crds=False)
    assert set(objects) == {"ServiceAccount/ops-prism-operator", "ClusterRole/ops-prism-operator",
                            "ClusterRoleBinding/ops-prism-operator", "Deployment/ops-prism-operator",
                            "Service/ops-prism-operator-metrics"}
    binding = objects["ClusterRoleBinding/ops-prism-operator"]
    assert binding["roleRef"]["name"] == "ops-prism-operator"
    assert binding["subjects"][0]["name"] == "ops-prism-operator"
    pod = objects["Deployment/ops-prism-operator"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "ops-prism-operator"
    selector = objects["Service/ops-prism-operator-metrics"]["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/instance"] == "ops"


# ---- every object is valid Kubernetes -------------------------------------------------------------------

@pytest.mark.parametrize("which", ["defaults", "custom"])
def test_rendered_objects_validate(which, request):
    objects = request.getfixturevalue(which)
    for name, obj in objects.items():
        check(obj, f"helm template ({which}) {name}")  # kubernetes-validate, strict; custom resources skipped


# ---- non-default values land where they say ---------------------------------------------------------------

def test_custom_values_render(custom, custom_values):
    v = custom_values
    assert set(custom) == crd_keys() | {
        "ServiceAccount/prism-operator-sa",
        "ClusterRole/media-ops-prism-operator", "ClusterRoleBinding/media-ops-prism-operator",
        "Deployment/media-ops-prism-operator", "Service/media-ops-prism-operator-metrics",
        "ServiceMonitor/media-ops-prism-operator", "ConfigMap/media-ops-prism-operator-dashboard"}
    deployment = custom["Deployment/media-ops-prism-operator"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == f"{v['image']['repository']}:{v['image']['tag']}"
    assert container["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == v["imagePullSecrets"]
    assert spec["serviceAccountName"] == "prism-operator-sa"
    assert spec["nodeSelector"] == v["nodeSelector"]
    assert spec["tolerations"] == v["tolerations"]
    assert spec["affinity"] == v["affinity"]
    assert spec["priorityClassName"] == v["priorityClassName"]
    assert container["resources"] == v["resources"]
    assert pod["metadata"]["annotations"] == v["podAnnotations"]
    assert v["podLabels"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "prism-operator",
                                                             "app.kubernetes.io/instance": "media-ops"}

    env = container["env"]
    assert env[-len(v["extraEnv"]):] == v["extraEnv"], "extraEnv comes last, verbatim"
    values = {e["name"]: e.get("value") for e in env}
    assert values["PRISM_TIMER_INTERVAL"] == "5" and values["PRISM_API_CONCURRENCY"] == "32"
    assert values["PRISM_API_TIMEOUT"] == "20" and values["PRISM_PROGRESS_TIMEOUT"] == "3"
    assert values["PRISM_METRICS_PORT"] == "9200"
    config = OperatorConfig.from_env({k: x for k, x in values.items() if k.startswith(ENV_PREFIX)})
    assert (config.timer_interval, config.api_concurrency, config.metrics_port) == (5.0, 32, 9200)
    assert {"name": "metrics", "containerPort": 9200} in container["ports"]

    service = custom["Service/media-ops-prism-operator-metrics"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9200, "targetPort": "metrics"}]
    assert service["metadata"]["annotations"] == v["metrics"]["service"]["annotations"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()

    monitor = custom["ServiceMonitor/media-ops-prism-operator"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["namespace"] == "platform"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s",
                                             "honorLabels": True, "scrapeTimeout": "10s"}]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    account = custom["ServiceAccount/prism-operator-sa"]
    assert account["metadata"]["annotations"] == v["serviceAccount"]["annotations"]
    (subject,) = custom["ClusterRoleBinding/media-ops-prism-operator"]["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "prism-operator-sa", "namespace": "platform"}


def test_custom_dashboard_configmap(custom):
    configmap = custom["ConfigMap/media-ops-prism-operator-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Prism"}
    assert configmap["data"]["prism.json"] == (CHART / "dashboards" / "prism.json").read_text().rstrip("\n")
    json.loads(configmap["data"]["prism.json"])


def test_watch_namespaces_replace_all_namespaces_in_the_image_command(custom, defaults):
    """The chart's command is the Dockerfile's ENTRYPOINT with --namespace flags for --all-namespaces,
    and kopf's own command line parser reads it (with the log flags) as meant."""
    entrypoint = dockerfile_entrypoint()
    default_container = defaults["Deployment/prism-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in default_container and "args" not in default_container  # the image's own

    container = custom["Deployment/media-ops-prism-operator"]["spec"]["template"]["spec"]["containers"][0]
    at = entrypoint.index("--all-namespaces")
    assert container["command"] == entrypoint[:at] + ["--namespace=media", "--namespace=team-*"] + entrypoint[at + 1:]
    assert container["args"] == ["--verbose", "--log-format=json"]
    params = kopf.cli.run.make_context("run", container["command"][2:] + container["args"]).params
    assert params["namespaces"] == ("media", "team-*") and not params["clusterwide"]
    assert params["standalone"] and params["verbose"] and params["log_format"].name == "JSON"
    assert params["modules"] == ("prism_operator.kopf_main",)

    rules = custom["ClusterRole/media-ops-prism-operator"]["rules"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]} in rules


@pytest.mark.parametrize(("level", "args"), [("warning", ["--quiet"]), ("debug", ["--verbose"])])
def test_log_level_appends_kopf_flags_to_the_image_entrypoint(helm, level, args):
    objects = helm.template(f"logLevel={level}", crds=False)
    container = objects["Deployment/prism-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container and container["args"] == args
    params = kopf.cli.run.make_context("run", dockerfile_entrypoint()[2:] + args).params
    assert params["clusterwide"] and (params["quiet"] if level == "warning" else params["verbose"])


def test_metrics_off_drops_the_service_and_tells_the_operator(helm):
    objects = helm.template("metrics.enabled=false", "metrics.serviceMonitor.enabled=true", crds=False)
    assert not {k for k in objects if k.startswith(("Service/", "ServiceMonitor/"))}
    container = objects["Deployment/prism-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "PRISM_METRICS_ENABLED", "value": "false"} in container["env"]
    assert [p["name"] for p in container["ports"]] == ["healthz"]


def test_image_digest_and_existing_service_account(helm):
    digest = "sha256:" + "ab" * 32
    objects = helm.template(f"image.digest={digest}", "serviceAccount.create=false",
                            "serviceAccount.name=platform-operators", crds=False)
    assert "ServiceAccount/prism-operator" not in objects
    pod = objects["Deployment/prism-operator"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"ghcr.io/prism-extract/operator@{digest}"
    assert pod["serviceAccountName"] == "platform-operators"
    assert objects["ClusterRoleBinding/prism-operator"]["subjects"][0]["name"] == "platform-operators"


@pytest.mark.parametrize(("value", "says"), [
    ("replicaCount=2", "replicaCount"),
    ("settings.PRISM_TIMER_INTERVALL=5", "PRISM_TIMER_INTERVALL"),
    ("settings.PRISM_METRICS_PORT=9200", "PRISM_METRICS_PORT"),
    ("logLevel=trace", "logLevel"),
    ("serviceAccount.create=false", "serviceAccount.name"),
], ids=["two-replicas", "misspelt-setting", "metrics-port-in-settings", "log-level", "no-account-name"])
def test_values_the_chart_refuses(helm, value, says):
    proc = helm.run("template", RELEASE, str(CHART), "--set", value, check=False)
    assert proc.returncode != 0, f"--set {value} rendered"
    assert says in proc.stderr, proc.stderr


def test_dashboard_without_its_file_names_the_fix(helm, tmp_path):
    chart = tmp_path / "prism-operator"
    shutil.copytree(CHART, chart)
    (chart / "dashboards" / "prism.json").unlink(missing_ok=True)
    proc = helm.run("template", RELEASE, str(chart), "--set", "grafanaDashboard.enabled=true", check=False)
    assert proc.returncode != 0 and "make crd" in proc.stderr, proc.stderr
