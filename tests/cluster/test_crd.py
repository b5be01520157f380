"""The ExtractionJob CRD on the real API server: established, explained, examples admitted, every bad
manifest behaving as its `# server:` header claims under both fieldValidation modes, and the
immutability rules holding (reordering included). The SearchService CRD: established, explained, its
defaults the models', its CEL rules holding, its status subresource and printer columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, apply_job, children, job_manifest, wait_phase

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
BAD = sorted((REPO / "tests" / "spec" / "bad").glob("*.yaml"))


def header(path: Path, key: str) -> list[str]:
    prefix = f"# {key}: "
    return [line[len(prefix):].strip() for line in path.read_text().splitlines() if line.startswith(prefix)]


def dry_run(kubectl, text: str, validation: str):
    """`kubectl apply --dry-run=server` with kubectl's fieldValidation mode (strict is its default;
    warn is what clients that send none, e.g. the Python client, get from the server)."""
    return kubectl.run("apply", "--dry-run=server", f"--validate={validation}", "-f", "-", stdin=text, check=False)


def test_crd_is_established_and_explained(admin):
    crd = admin.json("get", "crd", "extractionjobs.prism.dev")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    assert set(crd["spec"]["names"]["shortNames"]) == {"xj", "xjob"}
    explained = admin.run("explain", "extractionjob.spec.extractors.concurrency").stdout
    assert "ActorPoolStrategy" in explained or "actors" in explained.lower(), explained
    assert "DESCRIPTION" in admin.run("explain", "xj.spec.sink.qdrant").stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(kubectl, path):
    result = dry_run(kubectl, path.read_text(), "strict")
    assert result.returncode == 0, result.stderr
    assert "unknown field" not in result.stderr, result.stderr


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_manifest_behaves_as_its_header_claims(kubectl, path):
    verdicts = header(path, "server")
    assert verdicts in (["reject"], ["unknown-field"], ["admit"]), f"{path.name}: '# server:' header {verdicts}"
    text = path.read_text()
    strict, warn = dry_run(kubectl, text, "strict"), dry_run(kubectl, text, "warn")
    wanted = header(path, "server-error")
    match verdicts[0]:
        case "reject":
            assert strict.returncode != 0 and warn.returncode != 0, (strict.stdout, warn.stdout)
            for want in wanted:
                assert want in strict.stderr, strict.stderr
        case "unknown-field":
            assert strict.returncode != 0, strict.stdout
            assert "unknown field" in strict.stderr, strict.stderr
            # Warn (no fieldValidation): admitted with the field pruned, and a warning that says so.
            assert warn.returncode == 0, warn.stderr
            assert "unknown field" in warn.stderr, warn.stderr
            for want in wanted:
                assert want in strict.stderr, strict.stderr
        case "admit":
            assert strict.returncode == 0, strict.stderr
            assert warn.returncode == 0, warn.stderr


def test_server_admitted_bad_manifests_fail_with_invalid_spec_and_no_children(kubectl, operator):
    """What the schema cannot express the operator refuses: phase Failed, reason InvalidSpec, an
    Event, and no RayCluster or RayJob."""
    admitted = [p for p in BAD if header(p, "server") == ["admit"]]
    assert admitted, "no bad manifest is admitted by the server"
    names = []
    for path in admitted:
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["name"] = (path.stem[:24] + "-x").replace("_", "-")
        kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        names.append(doc["metadata"]["name"])
    for name in names:
        status = wait_phase(kubectl, name, "Failed", timeout=60)
        assert status["reason"] == "InvalidSpec", status
        assert status.get("observedGeneration") == 1, status
    assert children(kubectl, "rayclusters") == []
    assert children(kubectl, "rayjobs") == []


def _patch(kubectl, name: str, patch: list[dict]):
    return kubectl.run("patch", "extractionjob", name, "--type=json", "-p", json.dumps(patch), check=False)


def test_spec_is_immutable_except_the_documented_fields(kubectl):
    manifest = job_manifest("frozen", kubectl.namespace, extractors=[
        {"name": "text", "kind": "text-embedding"}, {"name": "faces", "kind": "face-detection"}])
    apply_job(kubectl, manifest)

    reorder = _patch(kubectl, "frozen", [
        {"op": "replace", "path": "/spec/extractors",
         "value": list(reversed(manifest["spec"]["extractors"]))}])
    assert reorder.returncode != 0, "reordering spec.extractors was accepted"
    assert "spec.extractors" in reorder.stderr and "immutable" in reorder.stderr, reorder.stderr

    changed = _patch(kubectl, "frozen", [{"op": "replace", "path": "/spec/source/uri", "value": "s3://other/"}])
    assert changed.returncode != 0 and "immutable" in changed.stderr, changed.stderr
    added = _patch(kubectl, "frozen", [{"op": "add", "path": "/spec/extractors/-",
                                        "value": {"name": "ocr", "kind": "ocr"}}])
    assert added.returncode != 0 and "immutable" in added.stderr, added.stderr

    for op in ({"op": "add", "path": "/spec/suspend", "value": True},
               {"op": "add", "path": "/spec/ttlSecondsAfterFinished", "value": 30},
               {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": 600}):
        result = _patch(kubectl, "frozen", [op])
        assert result.returncode == 0, (op, result.stderr)


def test_node_selector_keys_are_bounded(kubectl):
    """The server drops `propertyNames`; the key rule must still hold."""
    manifest = job_manifest("selector", kubectl.namespace)
    manifest["spec"]["cluster"]["workerGroups"][0]["nodeSelector"] = {"x" * 400: "y"}
    result = dry_run(kubectl, yaml.safe_dump(manifest), "strict")
    assert result.returncode != 0, "a 400-character nodeSelector key was admitted"
    assert "nodeSelector" in result.stderr, result.stderr


def test_metadata_name_rules_name_their_field(kubectl):
    manifest = job_manifest("a" * 60, kubectl.namespace)
    result = dry_run(kubectl, yaml.safe_dump(manifest), "strict")
    assert result.returncode != 0
    assert "metadata.name: Too long" in result.stderr, result.stderr
    # The server's own note that CEL was skipped for an invalid object is the only field-less line.
    unnamed = [line for line in result.stderr.splitlines()
               if "<nil>" in line and "validation rules were not checked" not in line]
    assert not unnamed, result.stderr


# ---- the SearchService CRD ------------------------------------------------------------------------------

def search_service(name: str = "docs-search", **spec) -> dict:
    return {"apiVersion": "prism.dev/v1alpha1", "kind": "SearchService", "metadata": {"name": name},
            "spec": {"collection": "docs", "qdrant": {"url": "http://qdrant.qdrant:6333"},
                     "deployments": [{"extractor": "text"}], **spec}}


def test_search_service_crd_is_established_and_explained(admin):
    crd = admin.json("get", "crd", "searchservices.prism.dev")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    assert crd["spec"]["names"]["shortNames"] == ["xs"]
    explained = admin.run("explain", "searchservice.spec.deployments.replicas").stdout
    assert "autoscaling" in explained.lower(), explained
    assert "DESCRIPTION" in admin.run("explain", "xs.spec.qdrant.apiKeySecretRef").stdout
    resources = admin.run("api-resources", "--api-group=prism.dev", "-o", "wide").stdout.splitlines()
    line = next(r for r in resources if r.startswith("searchservices "))
    assert " xs " in line and "prism" in line and "SearchService" in line, line


def test_search_service_defaults_are_the_models(kubectl):
    """What the API server stores for a minimal SearchService is what the operator parses from it."""
    from prism_api.search_service import parse_search_service

    minimal = search_service()
    result = kubectl.run("apply", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-",
                         stdin=json.dumps(minimal))
    stored = json.loads(result.stdout)["spec"]
    assert stored["cluster"]["workerGroups"][0]["name"] == "serve"
    assert stored["deployments"][0]["replicas"] == {"min": 1, "max": 1}
    assert stored["qdrant"]["timeoutSeconds"] == 30
    assert stored == parse_search_service(minimal).spec.to_wire()


@pytest.mark.parametrize(("spec", "wanted"), [
    ({"collection": "docs__prism_files"}, "spec.collection: Invalid value"),
    ({"deployments": [{"extractor": "text", "replicas": {"min": 3, "max": 2}}]},
     "replicas.min must be <= replicas.max"),
    ({"deployments": [{"extractor": "text"}, {"extractor": "text"}]}, "spec.deployments[1]: Duplicate value"),
    ({"cluster": {"workerGroups": [{"name": "serve", "minReplicas": 5, "maxReplicas": 2}]}},
     "minReplicas must be <= maxReplicas"),
    ({"cluster": {"workerGroups": []}}, "spec.cluster.workerGroups"),
    ({"qdrant": {"url": "ftp://qdrant"}}, "spec.qdrant.url"),
])
def test_search_service_rules_hold_on_the_server(kubectl, spec, wanted):
    for validation in ("strict", "warn"):
        result = dry_run(kubectl, json.dumps(search_service(**spec)), validation)
        assert result.returncode != 0, f"{spec} was admitted ({validation})"
        assert wanted in result.stderr, result.stderr
    if "__prism" in json.dumps(spec):
        assert "must not contain '__prism'" in result.stderr, result.stderr


def test_search_service_name_is_bounded(kubectl):
    from prism_api.search_service import MAX_SEARCH_NAME_LENGTH

    assert dry_run(kubectl, json.dumps(search_service("a" * MAX_SEARCH_NAME_LENGTH)), "strict").returncode == 0
    result = dry_run(kubectl, json.dumps(search_service("a" * (MAX_SEARCH_NAME_LENGTH + 1))), "strict")
    assert result.returncode != 0 and "metadata.name: Too long" in result.stderr, result.stderr


def test_search_service_spec_changes_and_status_columns(kubectl):
    """Every spec field may change (the operator rolls it out); the operator's status is accepted by the
    status subresource and shown by the printer columns."""
    from prism_api.job_status import Condition
    from prism_api.search_service import SearchServiceStatus, ServedModel, ServicePhase

    kubectl.apply(search_service("docs"))
    kubectl.merge_patch("searchservice", "docs", {"spec": {"collection": "docs-v2", "deployments": [
        {"extractor": "text", "replicas": {"min": 1, "max": 3}}]}})
    status = SearchServiceStatus(
        phase=ServicePhase.READY, reason="Serving", message="1 deployment healthy", observed_generation=2,
        conditions=[Condition(type="Ready", status="True", reason="Serving", observed_generation=2)],
        ray_service="docs", endpoint="http://docs-serve-svc:8000", ready_replicas=2,
        models=[ServedModel(extractor="text", kind="text-embedding", version="c9745ed1")])
    kubectl.run("patch", "searchservice", "docs", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status.to_wire()}))
    stored = kubectl.json("get", "xs", "docs")
    assert stored["metadata"]["generation"] == 2 and stored["spec"]["collection"] == "docs-v2"
    assert SearchServiceStatus.model_validate(stored["status"]) == status
    wide = kubectl.run("get", "xs", "docs", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "PHASE", "COLLECTION", "READY", "ENDPOINT", "MODELS", "REASON", "AGE"], wide
    assert wide[1].split()[:7] == ["docs", "Ready", "docs-v2", "2", "http://docs-serve-svc:8000", "c9745ed1",
                                   "Serving"], wide
