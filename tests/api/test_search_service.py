"""The SearchService contract (prism_api.search_service): every model crosses a process boundary and
round-trips through its wire form; bad input is refused naming the field; the SearchService CRD is the
generated one, structural, explained, and refuses (with the API server's semantics: tests/spec/crd_check.py)
what the models refuse where a schema or a cheap CEL rule can say it, with the same defaults."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from prism_api import SpecError, parse_job
from prism_api import search_service as ss
from prism_api.crd import build_search_crd
from prism_api.fields import PrismModel
from prism_api.job_status import Condition
from prism_api.search_service import (
    MAX_SEARCH_NAME_LENGTH,
    EmbedRequest,
    EmbedResponse,
    ErrorBody,
    LocalServiceRecord,
    ReplicaBounds,
    SearchFilter,
    SearchHit,
    SearchQdrant,
    SearchRequest,
    SearchResponse,
    SearchService,
    SearchServiceSpec,
    SearchServiceStatus,
    ServeAppArgs,
    ServeCluster,
    ServeDeployment,
    ServedModel,
    ServeResources,
    ServiceInfo,
    ServicePhase,
    TimeRange,
    parse_search_service,
)
from prism_cli.cmd_crd import render
from tests.spec.crd_check import admit, apply_defaults, root_schema, schema_errors
from tests.spec.crd_check import schema_dicts as _nodes
from tests.spec.crd_check import schema_nodes as _walk

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "searchservice.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
SCHEMA = root_schema(CRD)

MANIFEST = {
    "apiVersion": "prism.dev/v1alpha1",
    "kind": "SearchService",
    "metadata": {"name": "campaign-search", "namespace": "media"},
    "spec": {
        "collection": "campaign",
        "qdrant": {"url": "http://qdrant.qdrant:6333", "apiKeySecretRef": {"name": "qdrant", "key": "api-key"}},
        "deployments": [
            {"extractor": "text", "replicas": {"min": 1, "max": 4}, "targetOngoingRequests": 4,
             "maxOngoingRequests": 32, "maxBatchSize": 32, "resources": {"cpu": 1, "memory": "2Gi"}},
            {"extractor": "image", "replicas": {"min": 1, "max": 2}, "resources": {"cpu": 1, "gpu": 0.5}},
        ],
        "cluster": {"workerGroups": [{"name": "cpu", "cpu": "4", "memory": "16Gi", "minReplicas": 1,
                                      "maxReplicas": 4},
                                     {"name": "gpu", "gpus": 1, "minReplicas": 0, "maxReplicas": 2}]},
    },
}


def manifest(**spec) -> dict:
    doc = copy.deepcopy(MANIFEST)
    doc["spec"].update(spec)
    return doc


# ---- round trips --------------------------------------------------------------------------------------

STATUS = SearchServiceStatus(
    phase=ServicePhase.READY, reason="Serving", message="2 deployments healthy", observed_generation=3,
    conditions=[Condition(type="Ready", status="True", reason="Serving", last_transition_time="2026-12-03T07:00:00Z",
                          observed_generation=3)],
    ray_service="campaign-search", endpoint="http://campaign-search-serve-svc.media.svc:8000", ready_replicas=3,
    models=[ServedModel(extractor="text", kind="text-embedding", model="hf://sentence-transformers/all-MiniLM-L6-v2",
                        version="c9745ed1"),
            ServedModel(extractor="image", version="open_clip:ViT-B-32/laion2b")],
)
HIT = SearchHit(score=0.83, uri="s3://media/campaign/a.pdf", key="s3://media/campaign/a.pdf#chunk=3", item="chunk=3",
                modality="document", page=2, text="a red kite over the dunes", excerpt="a red kite",
                failed_extractors=["ocr"])
SAMPLES: list[PrismModel] = [
    ReplicaBounds(min=2, max=5),
    ServeResources(cpu=0.5, gpu=0.25, memory="3Gi"),
    ServeDeployment(extractor="text", replicas=ReplicaBounds(min=1, max=8), target_ongoing_requests=3.5,
                    max_ongoing_requests=80, max_batch_size=64, batch_wait_timeout_ms=0,
                    resources=ServeResources(cpu=2, gpu=1)),
    ServeAppArgs(collection="campaign", qdrant_url="https://qdrant.example:6333", timeout_seconds=5,
                 deployments=[ServeDeployment(extractor="text")]),
    ServeAppArgs(collection="campaign", state_dir="/home/me/.prism"),
    SearchQdrant(url="http://qdrant.qdrant:6333", api_key_secret_ref={"name": "qdrant", "key": "api-key"},
                 timeout_seconds=12.5),
    ServeCluster(ray_version="2.60.0", image="registry.local/worker:1", image_pull_policy="Always",
                 head={"cpu": "1", "memory": "4Gi"},
                 worker_groups=[{"name": "gpu", "gpus": 1, "minReplicas": 1, "maxReplicas": 3,
                                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}]),
    SearchServiceSpec.model_validate(MANIFEST["spec"]),
    SearchServiceStatus(),
    STATUS,
    ServedModel(extractor="text", version="v1"),
    SearchService.model_validate({**MANIFEST, "status": STATUS.to_wire()}),
    TimeRange(gte=1.5), TimeRange(lte=30), TimeRange(gte=0, lte=0),
    SearchFilter(modality=["image", "video"], uri_prefix="s3://media/campaign/", time_range=TimeRange(gte=10, lte=20),
                 page=4),
    EmbedRequest(text="a red kite"), EmbedRequest(image="iVBORw0KGgo=", vector="image"),
    EmbedResponse(vectors={"text": [0.1, -0.25, 1e-9]}, versions={"text": "c9745ed1"}),
    SearchRequest(text="a red kite", limit=3, vector="text", filter=SearchFilter(page=0)),
    SearchRequest(image="iVBORw0KGgo="),
    HIT, SearchHit(score=-0.5, uri="/a.mp4", key="/a.mp4#frame=48", item="frame=48", timestamp=2.0, at=1.5),
    SearchResponse(vector="text", version="c9745ed1", hits=[HIT]),
    ServiceInfo(collection="campaign", models=STATUS.models),
    ErrorBody(error="text: give exactly one of text and image", field="text"), ErrorBody(error="boom"),
    LocalServiceRecord(url="http://127.0.0.1:8123", pid=4242, collection="campaign", ray_address="127.0.0.1:6379",
                       started_at="2026-12-03T07:00:00+00:00"),
]


@pytest.mark.parametrize("model", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_model_round_trips_through_its_wire_form(model):
    wire = model.to_wire()
    again = type(model).model_validate(wire)
    assert again == model
    assert again.to_wire() == wire


def test_every_model_of_the_module_has_a_round_trip_sample():
    models = {obj for _, obj in inspect.getmembers(ss, inspect.isclass)
              if issubclass(obj, BaseModel) and obj.__module__ == ss.__name__ and not obj.__name__.startswith("_")
              and obj is not ss.SearchServiceMeta}
    assert models - {type(m) for m in SAMPLES} == set()


def test_the_wire_form_is_camel_case():
    wire = SAMPLES[2].to_wire()
    assert {"targetOngoingRequests", "maxOngoingRequests", "maxBatchSize", "batchWaitTimeoutMs"} <= set(wire)
    assert STATUS.to_wire()["readyReplicas"] == 3 and STATUS.to_wire()["rayService"] == "campaign-search"


def test_the_spec_gives_the_application_its_arguments():
    spec = parse_search_service(MANIFEST).spec
    args = spec.app_args()
    assert args.collection == "campaign" and args.qdrant_url == "http://qdrant.qdrant:6333"
    assert args.state_dir is None and args.deployment("text").max_batch_size == 32
    assert args.deployment("faces") == ServeDeployment(extractor="faces")  # not listed: the defaults
    assert ServeAppArgs.model_validate(args.to_wire()) == args


# ---- refusals that name the field -----------------------------------------------------------------------

def refused(doc: dict) -> list[str]:
    with pytest.raises(SpecError) as err:
        parse_search_service(doc)
    return [str(e) for e in err.value.errors]


def test_the_name_leaves_room_for_kuberays_names():
    long = manifest()
    long["metadata"]["name"] = "a" * (MAX_SEARCH_NAME_LENGTH + 1)
    (error,) = refused(long)
    assert error.startswith(f"metadata.name: must be at most {MAX_SEARCH_NAME_LENGTH} characters"), error
    long["metadata"]["name"] = "a" * MAX_SEARCH_NAME_LENGTH
    assert parse_search_service(long).metadata.name == long["metadata"]["name"]
    bad = manifest()
    bad["metadata"]["name"] = "1-search"
    assert refused(bad)[0].startswith("metadata.name: must be a DNS-1035 label")


@pytest.mark.parametrize(("change", "path", "says"), [
    ({"collection": "campaign__prism_files"}, "spec.collection", "must not contain '__prism'"),
    ({"collection": "no spaces"}, "spec.collection", "letters, digits"),
    ({"deployments": [{"extractor": "text", "replicas": {"min": 3, "max": 2}}]},
     "spec.deployments[0].replicas", "min (3) must be <= max (2)"),
    ({"deployments": [{"extractor": "text"}, {"extractor": "image"}, {"extractor": "text"}]},
     "spec.deployments", "extractor 'text' listed more than once"),
    ({"deployments": [{"extractor": "text", "replicas": {"min": 0}}]}, "spec.deployments[0].replicas.min", ">= 1"),
    ({"deployments": [{"extractor": "Text"}]}, "spec.deployments[0].extractor", "lower-case"),
    ({"deployments": [{"extractor": "text", "resources": {"cpu": 0}}]},
     "spec.deployments[0].resources.cpu", "> 0"),
    ({"deployments": [{"extractor": "text", "batchSize": 8}]}, "spec.deployments[0].batchSize", ""),
    ({"qdrant": {"url": "http://user:pw@qdrant:6333"}}, "spec.qdrant.url", "apiKeySecretRef"),
    ({"qdrant": {"url": "http://qdrant:6333/?api_key=s3cret"}}, "spec.qdrant.url", "must not embed credentials"),
    ({"qdrant": {"url": "qdrant:6333"}}, "spec.qdrant.url", ""),
    ({"cluster": {"workerGroups": []}}, "spec.cluster.workerGroups", ""),
    ({"cluster": {"workerGroups": [{"name": "cpu", "minReplicas": 5, "maxReplicas": 2}]}},
     "spec.cluster.workerGroups[0].minReplicas", "must be <= maxReplicas (got 5 > 2)"),
    ({"cluster": {"workerGroups": [{"name": "cpu"}, {"name": "cpu", "gpus": 1}]}},
     "spec.cluster.workerGroups[1].name", "must be unique"),
    ({"cluster": {"workerGroups": [{"name": "cpu"}]}}, "spec.deployments[1].resources.gpu",
     "no spec.cluster.workerGroups entry has gpus > 0"),
    ({"deployments": [{"extractor": "image", "resources": {"gpu": 2}}]}, "spec.deployments[0].resources.gpu",
     "the largest GPU worker group has 1"),
])
def test_bad_specs_name_the_field(change, path, says):
    errors = refused(manifest(**change))
    assert any(e.startswith(f"{path}: ") and says in e for e in errors), errors


def test_the_url_check_does_not_leak_the_secret():
    errors = refused(manifest(qdrant={"url": "http://qdrant:6333/?api_key=s3cret"}))
    assert not any("s3cret" in e for e in errors), errors


@pytest.mark.parametrize(("args", "says"), [
    ({"collection": "c"}, "give exactly one of qdrantUrl"),
    ({"collection": "c", "qdrantUrl": "http://q:6333", "stateDir": "/s"}, "give exactly one of qdrantUrl"),
    ({"collection": "c__prism", "stateDir": "/s"}, "must not contain '__prism'"),
    ({"collection": "c", "stateDir": "/s", "deployments": [{"extractor": "a"}, {"extractor": "a"}]},
     "listed more than once"),
])
def test_app_args_refusals(args, says):
    with pytest.raises(ValidationError, match=says):
        ServeAppArgs.model_validate(args)


@pytest.mark.parametrize(("model", "data", "loc", "says"), [
    (EmbedRequest, {}, (), "give exactly one of text and image"),
    (EmbedRequest, {"text": "a", "image": "aGk="}, (), "give exactly one of text and image"),
    (SearchRequest, {"text": ""}, ("text",), "at least 1 character"),
    (SearchRequest, {"text": "x" * (ss.MAX_QUERY_CHARS + 1)}, ("text",), "at most"),
    (SearchRequest, {"text": "a", "limit": 0}, ("limit",), "greater than or equal to 1"),
    (SearchRequest, {"text": "a", "limit": ss.MAX_LIMIT + 1}, ("limit",), "less than or equal to"),
    (SearchRequest, {"text": "a", "filter": {"modality": ["smell"]}}, ("filter", "modality", 0), "'image'"),
    (SearchRequest, {"text": "a", "filter": {"timeRange": {"gte": 9, "lte": 3}}}, ("filter", "timeRange"),
     "gte (9.0) must be <= lte (3.0)"),
    (SearchRequest, {"text": "a", "filter": {"timeRange": {}}}, ("filter", "timeRange"), "give gte, lte or both"),
    (SearchRequest, {"text": "a", "filters": {}}, ("filters",), "Extra inputs"),
    (SearchRequest, {"text": "a", "vector": "../x"}, ("vector",), "pattern"),
])
def test_http_requests_name_the_field(model, data, loc, says):
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
    assert any(tuple(e["loc"]) == loc and says in e["msg"] for e in err.value.errors()), err.value.errors()


def test_time_range_order():
    assert TimeRange(gte=3, lte=3).gte == 3
    with pytest.raises(ValidationError, match=r"gte \(4.0\) must be <= lte \(3.0\)"):
        TimeRange(gte=4, lte=3)


# ---- the CRD ------------------------------------------------------------------------------------------

def test_the_committed_crd_is_the_generated_one():
    assert CRD_PATH.read_text() == render("SearchService"), "crds/searchservice.yaml is stale: run `make crd`"
    assert yaml.safe_load(render("SearchService").split("\n", 1)[1]) == build_search_crd()


def test_crd_identity():
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == "searchservices.prism.dev"
    assert spec["group"] == "prism.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "SearchService" and spec["names"]["plural"] == "searchservices"
    assert spec["names"]["shortNames"] == ["xs"] and spec["names"]["categories"] == ["prism", "all"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert [n for n, c in columns.items() if not c.get("priority")] == ["Phase", "Collection", "Ready", "Age"]
    assert [n for n, c in columns.items() if c.get("priority")] == ["Endpoint", "Models", "Reason"]
    assert columns["Ready"]["jsonPath"] == ".status.readyReplicas"


def test_printer_columns_point_at_real_fields():
    """A jsonPath naming no field prints an empty column forever: every one names a schema field."""
    for column in CRD["spec"]["versions"][0]["additionalPrinterColumns"]:
        node = SCHEMA
        for part in column["jsonPath"].lstrip(".").replace("[*]", "").split("."):
            node = node.get("items", node)
            if part in ("creationTimestamp",) and node is SCHEMA["properties"]["metadata"]:
                break
            assert part in node.get("properties", {}), column
            node = node["properties"][part]


def test_schema_is_structural():
    for path, node in _walk(SCHEMA):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path


def test_nothing_preserves_unknown_fields_and_no_property_names():
    assert [p for p, n in _nodes(SCHEMA) if n.get("x-kubernetes-preserve-unknown-fields")] == []
    assert [p for p, n in _nodes(CRD) if "propertyNames" in n] == []


def test_every_list_is_bounded_and_every_field_described():
    spec = SCHEMA["properties"]["spec"]
    assert [p for p, n in _walk(spec) if n.get("type") == "array" and "maxItems" not in n] == []
    undescribed = [p for p, n in _walk(SCHEMA) if p.startswith(("$.spec.", "$.status."))
                   and not p.endswith(("[]", "{}")) and not n.get("description")]
    assert undescribed == []


def test_metadata_name_is_bounded_by_a_schema():
    assert "x-kubernetes-validations" not in SCHEMA
    assert SCHEMA["properties"]["metadata"]["properties"]["name"]["maxLength"] == MAX_SEARCH_NAME_LENGTH
    long = manifest()
    long["metadata"]["name"] = "a" * (MAX_SEARCH_NAME_LENGTH + 1)
    assert [v.split(":")[0] for v in admit(long, crd=CRD)] == ["metadata.name"]


def test_crd_is_a_valid_kubernetes_object():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(CRD, "1.34", strict=True)


def test_the_manifest_is_admitted_strictly():
    assert admit(MANIFEST, crd=CRD, strict=True) == []


def test_the_servers_defaults_are_the_models():
    """What the API server stores for a minimal manifest is what the operator parses from it."""
    minimal = {"apiVersion": "prism.dev/v1alpha1", "kind": "SearchService", "metadata": {"name": "s"},
               "spec": {"collection": "c", "qdrant": {"url": "http://q:6333"},
                        "deployments": [{"extractor": "text"}]}}
    stored = apply_defaults(SCHEMA, copy.deepcopy(minimal))
    assert admit(minimal, crd=CRD, strict=True) == []
    assert stored["spec"]["cluster"]["workerGroups"][0]["name"] == "serve"
    assert stored["spec"]["deployments"][0]["replicas"] == {"min": 1, "max": 1}
    assert SearchServiceSpec.model_validate(stored["spec"]) == parse_search_service(minimal).spec
    # and nothing the server defaults is something the model would not write itself
    assert stored["spec"] == {k: v for k, v in parse_search_service(minimal).spec.to_wire().items()}


@pytest.mark.parametrize(("change", "says"), [
    ({"collection": "campaign__prism_files"}, "spec.collection: collection must not contain '__prism'"),
    ({"deployments": [{"extractor": "text", "replicas": {"min": 3, "max": 2}}]},
     "spec.deployments[0].replicas: replicas.min must be <= replicas.max"),
    ({"deployments": [{"extractor": "text"}, {"extractor": "text"}]},
     'spec.deployments[1]: Duplicate value: {"extractor": "text"}'),
    ({"cluster": {"workerGroups": [{"name": "cpu", "minReplicas": 5, "maxReplicas": 2}]}},
     "spec.cluster.workerGroups[0]: minReplicas must be <= maxReplicas"),
    ({"cluster": {"workerGroups": []}}, "spec.cluster.workerGroups"),
    ({"cluster": {"workerGroups": [{"name": "cpu"}, {"name": "cpu"}]}},
     'spec.cluster.workerGroups[1]: Duplicate value: {"name": "cpu"}'),
    ({"deployments": [{"extractor": "text", "maxBatchSize": 0}]}, "spec.deployments[0].maxBatchSize"),
    ({"deployments": [{"extractor": "text", "maxBatchSize": 32, "maxOngoingRequests": 16}]},
     "spec.deployments[0].maxBatchSize: maxBatchSize must be <= maxOngoingRequests"),
    ({"qdrant": {"url": "ftp://q"}}, "spec.qdrant.url"),
])
def test_the_crd_refuses_what_the_model_refuses(change, says):
    doc = manifest(**change)
    verdict = admit(doc, crd=CRD)
    assert any(v.startswith(says) for v in verdict), verdict
    with pytest.raises(SpecError):
        parse_search_service(doc)


def test_a_spec_may_change():
    """No immutability: a changed spec is rolled out to the RayService."""
    changed = manifest(collection="campaign-v2", deployments=[{"extractor": "text", "replicas": {"max": 9}}])
    assert admit(changed, old=MANIFEST, crd=CRD) == []


def test_the_operators_status_is_valid_for_the_crd():
    status_schema = SCHEMA["properties"]["status"]
    assert schema_errors(status_schema, STATUS.to_wire()) == []
    assert schema_errors(status_schema, SearchServiceStatus().to_wire()) == []
    assert set(status_schema["properties"]) == {f.alias or n for n, f in SearchServiceStatus.model_fields.items()}


def test_the_extraction_job_crd_carries_serve_refs():
    job = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    job["spec"]["extractors"][0]["serve"] = {"deployment": job["spec"]["extractors"][0]["name"], "maxInFlight": 8}
    assert admit(job, strict=True) == []
    assert parse_job(job).spec.extractors[0].serve.max_in_flight == 8
    job["spec"]["extractors"][0]["serve"]["maxInFlight"] = 0
    assert any("serve.maxInFlight" in v for v in admit(job))
