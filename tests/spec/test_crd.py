"""The committed CRD is the generated one, is structural, explains every field, and its CEL rules
keep the spec immutable except suspend, ttlSecondsAfterFinished, activeDeadlineSeconds and cleanup.
It avoids what a real kube-apiserver silently ignores or mis-reports (docs/platform-facts.md, "A real control plane")."""

from __future__ import annotations

import copy

import pytest
import yaml

from prism_api import SpecError, parse_job
from prism_api.child_names import MAX_JOB_NAME_LENGTH
from prism_api.crd import MUTABLE_SPEC_FIELDS
from prism_cli.cmd_crd import render

from .crd_check import CRD_PATH, ROOT, admit, cel_violations, load_crd, root_schema
from .crd_check import schema_dicts as _nodes
from .crd_check import schema_nodes as _walk


def test_committed_crd_matches_the_models():
    assert CRD_PATH.read_text() == render(), (
        "crds/extractionjob.yaml is stale: run `prism crd > crds/extractionjob.yaml`"
    )


def test_crd_identity():
    crd = load_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "extractionjobs.prism.dev"
    assert spec["group"] == "prism.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ExtractionJob" and spec["names"]["plural"] == "extractionjobs"
    assert set(spec["names"]["shortNames"]) == {"xj", "xjob"}
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Progress", "Files", "Points", "Age"]


def test_schema_is_structural():
    for path, node in _walk(root_schema(load_crd())):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path


def test_only_extractor_options_preserve_unknown_fields():
    preserved = [p for p, n in _walk(root_schema(load_crd())) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == ["$.spec.extractors[].options"]
    anywhere = [p for p, n in _nodes(root_schema(load_crd())) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert anywhere == ["$.properties.spec.properties.extractors.items.properties.options"]


def test_no_property_names_anywhere():
    """The API server silently drops `propertyNames`: a key bound there would be enforced nowhere."""
    assert [p for p, n in _nodes(load_crd()) if "propertyNames" in n] == []


def test_metadata_name_is_bounded_by_a_schema_not_a_root_rule():
    """Root-level CEL rules report their field as <nil>; a metadata schema reports metadata.name."""
    schema = root_schema(load_crd())
    assert "x-kubernetes-validations" not in schema
    assert schema["properties"]["metadata"] == {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": MAX_JOB_NAME_LENGTH,
                                "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"}},
    }


@pytest.mark.parametrize(("name", "admitted"), [
    ("a" * MAX_JOB_NAME_LENGTH, True),
    ("a" * (MAX_JOB_NAME_LENGTH + 1), False),
    ("campaign-1", True),
    ("1-campaign", False),
    ("campaign-", False),
    ("Campaign", False),
])
def test_metadata_name(name, admitted):
    job = _job()
    job["metadata"]["name"] = name
    verdict = admit(job)
    assert (verdict == []) is admitted, verdict
    assert all(v.startswith("metadata.name: ") for v in verdict), verdict


def test_every_spec_list_is_bounded():
    """CEL cost estimates multiply by list sizes: unbounded lists can push a rule over the budget."""
    spec = root_schema(load_crd())["properties"]["spec"]
    unbounded = [p for p, n in _walk(spec) if n.get("type") == "array" and "maxItems" not in n]
    assert unbounded == []


def _with_node_selector(key: str) -> dict:
    job = _job()
    job["spec"]["cluster"]["workerGroups"][0]["nodeSelector"] = {key: "yes"}
    return job


@pytest.mark.parametrize(("length", "admitted"), [(1, True), (316, True), (317, False)])
def test_node_selector_keys_are_bounded_by_cel_as_by_the_model(length, admitted):
    job = _with_node_selector("k" * length)
    verdict = admit(job)
    if admitted:
        assert verdict == []
        parse_job(job)
    else:
        assert verdict == ["spec.cluster.workerGroups[0].nodeSelector: every key must be at most 316 characters long"]
        with pytest.raises(SpecError, match=r"nodeSelector"):
            parse_job(job)


def test_every_spec_and_status_field_is_described():
    schema = root_schema(load_crd())
    undescribed = [
        p for p, n in _walk(schema)
        if p.startswith(("$.spec.", "$.status.")) and not p.endswith(("[]", "{}")) and not n.get("description")
    ]
    assert undescribed == []


def test_crd_is_a_valid_kubernetes_object():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(load_crd(), "1.34", strict=True)


def _job() -> dict:
    return yaml.safe_load((ROOT / "examples" / "gpu-video.yaml").read_text())


def _changed(path: str, value) -> tuple[dict, dict]:
    old, new = _job(), _job()
    target = new["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(leaf) if leaf.isdigit() else leaf] = value
    return old, new


@pytest.mark.parametrize(("path", "value"), [
    ("suspend", True),
    ("ttlSecondsAfterFinished", 60),
    ("activeDeadlineSeconds", 7200),
])
def test_mutable_fields_may_change(path, value):
    old, new = _changed(path, value)
    assert admit(new, old) == []


@pytest.mark.parametrize(("path", "value", "field"), [
    ("source.uri", "s3://media/other/", "source"),
    ("extractors.0.batchSize", 128, "extractors"),
    ("extractors.4.options", {"categories": ["gambling"]}, "extractors"),
    ("sink.qdrant.collection", "other", "sink"),
    ("cluster.image", "ghcr.io/prism-extract/worker:0.2.0", "cluster"),
    ("retries", {"limit": 5}, "retries"),
    ("incremental", False, "incremental"),
])
def test_everything_else_is_immutable(path, value, field):
    old, new = _changed(path, value)
    verdict = admit(new, old)
    assert any(f"spec.{field} is immutable" in v for v in verdict), verdict


def test_removing_an_optional_field_is_a_change():
    old = _job()
    new = copy.deepcopy(old)
    new["spec"]["cluster"].pop("existing", None)
    old["spec"]["cluster"]["existing"] = "shared"
    assert any("spec.cluster is immutable" in v for v in admit(new, old))


def _reordered(path: str) -> tuple[dict, dict]:
    old, new = _job(), _job()
    target = new["spec"]
    for key in path.split("."):
        target = target[key]
    assert len(target) >= 2, f"{path}: the example needs two entries to reorder"
    target.reverse()
    return old, new


@pytest.mark.parametrize(("path", "field"), [("extractors", "extractors"), ("cluster.workerGroups", "cluster")])
def test_reordering_a_list_map_is_a_change(path, field):
    """CEL `==` on an x-kubernetes-list-type: map list ignores order; extractors apply in order."""
    old, new = _reordered(path)
    verdict = admit(new, old)
    assert any(f"spec.{field} is immutable" in v for v in verdict), verdict


def test_list_map_equality_ignores_order_as_on_the_server():
    """The offline checker must reproduce the server's semantics, or the test above proves nothing."""
    schema = {
        "type": "object",
        "properties": {"l": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}},
        }},
        "x-kubernetes-validations": [
            {"rule": "self.l == oldSelf.l", "message": "set"},
            {"rule": "self.l.map(e, e.name) == oldSelf.l.map(e, e.name)", "message": "order"},
        ],
    }
    a, b = {"name": "a", "v": 1}, {"name": "b", "v": 2}
    assert cel_violations(schema, {"l": [b, a]}, {"l": [a, b]}) == ["<root>: order"]
    assert cel_violations(schema, {"l": [a, b]}, {"l": [a, b]}) == []
    assert cel_violations(schema, {"l": [a, {**b, "v": 3}]}, {"l": [a, b]}) == ["<root>: set"]
    assert cel_violations(schema, {"l": [a]}, {"l": [a, b]}) == ["<root>: set", "<root>: order"]


def test_list_map_order_rules_are_cheap_and_guarded():
    rules = {r["fieldPath"]: r["rule"] for r in root_schema(load_crd())["properties"]["spec"]["x-kubernetes-validations"]}
    assert "self.extractors.map(e, e.name) == oldSelf.extractors.map(e, e.name)" in rules[".extractors"]
    assert ("(!has(self.cluster.workerGroups) || self.cluster.workerGroups.map(e, e.name) == "
            "oldSelf.cluster.workerGroups.map(e, e.name))") in rules[".cluster"]


def test_immutability_rules_cover_every_other_spec_field():
    spec = root_schema(load_crd())["properties"]["spec"]
    guarded = {r["fieldPath"].lstrip(".") for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"]}
    assert guarded == set(spec["properties"]) - set(MUTABLE_SPEC_FIELDS)
