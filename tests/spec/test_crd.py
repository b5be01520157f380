"""The committed CRD is the generated one, is structural, explains every field, and its CEL rules
keep the spec immutable except suspend, ttlSecondsAfterFinished and activeDeadlineSeconds."""

from __future__ import annotations

import copy

import pytest
import yaml

from prism_cli.cmd_crd import render
from prism_pipeline.spec.crd import MUTABLE_SPEC_FIELDS

from .crd_check import CRD_PATH, ROOT, admit, load_crd, root_schema


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


def _walk(node, path="$"):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


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


def test_immutability_rules_cover_every_other_spec_field():
    spec = root_schema(load_crd())["properties"]["spec"]
    guarded = {r["fieldPath"].lstrip(".") for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"]}
    assert guarded == set(spec["properties"]) - set(MUTABLE_SPEC_FIELDS)
