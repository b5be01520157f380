"""spec.cleanup (what a failed job keeps for debugging) and status.debug (where its record was saved):
defaults, errors naming the field, the CRD's schema and `kubectl explain` text. The bad manifests
(tests/spec/bad/cleanup-*.yaml) are checked with the others in test_manifests.py."""

from __future__ import annotations

import copy

import pytest
import yaml

from prism_api import ExtractionJobStatus, SpecError, parse_job
from prism_api.job_status import DebugRecord

from .crd_check import ROOT, admit, load_crd, root_schema


def _minimal() -> dict:
    return yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())


def _with(cleanup: dict, **spec) -> dict:
    doc = _minimal()
    doc["spec"].update(cleanup=cleanup, **spec)
    return doc


def test_by_default_a_failed_job_is_cleaned_up_as_today():
    spec = parse_job(_minimal()).spec
    assert (spec.cleanup.on_failure.keep, spec.cleanup.on_failure.ttl_seconds) == ("None", None)
    assert spec.to_wire()["cleanup"] == {"onFailure": {"keep": "None"}}


@pytest.mark.parametrize("keep,ttl", [("Cluster", 3600), ("Head", 0), ("Head", None), ("None", None)])
def test_valid_policies_round_trip_and_are_admitted(keep, ttl):
    on_failure = {"keep": keep} | ({"ttlSeconds": ttl} if ttl is not None else {})
    doc = _with({"onFailure": on_failure}, ttlSecondsAfterFinished=60)
    spec = parse_job(doc).spec
    assert (spec.cleanup.on_failure.keep, spec.cleanup.on_failure.ttl_seconds) == (keep, ttl)
    assert spec.to_wire()["cleanup"]["onFailure"] == on_failure
    assert admit(doc, strict=True) == []


@pytest.mark.parametrize("cleanup,spec,wanted", [
    ({"onFailure": {"ttlSeconds": 60}}, {},
     "spec.cleanup.onFailure.ttlSeconds: applies only with keep Cluster or Head (got ttlSeconds 60 with keep None"),
    ({"onFailure": {"keep": "Cluster"}}, {"cluster": {"existing": "shared"}},
     "spec.cleanup.onFailure.keep: applies only to a RayCluster the job owns (got keep Cluster with cluster.existing "
     "'shared'"),
    ({"onFailure": {"keep": "head"}}, {}, "spec.cleanup.onFailure.keep: must be one of 'None', 'Cluster' or 'Head'"),
    ({"onFailure": {"keep": "Head", "ttlSeconds": -1}}, {}, "spec.cleanup.onFailure.ttlSeconds: must be >= 0"),
    ({"onFailure": {"keep": "Head", "deleteAfter": 5}}, {}, "spec.cleanup.onFailure.deleteAfter: is not a known field"),
])
def test_mistakes_name_their_field(cleanup, spec, wanted):
    with pytest.raises(SpecError) as info:
        parse_job(_with(cleanup, **spec))
    messages = [str(e) for e in info.value.errors]
    assert any(m.startswith(wanted) for m in messages), messages


def test_the_crd_explains_the_policy_and_refuses_an_unknown_keep():
    spec = root_schema(load_crd())["properties"]["spec"]
    on_failure = spec["properties"]["cleanup"]["properties"]["onFailure"]
    keep = on_failure["properties"]["keep"]
    assert keep["enum"] == ["None", "Cluster", "Head"] and keep["default"] == "None"
    assert "spec.cluster.existing" in keep["description"] and "DeleteWorkers" in keep["description"]
    assert "never deleted" in on_failure["description"]
    assert on_failure["properties"]["ttlSeconds"]["minimum"] == 0
    assert "<job>-debug" in spec["properties"]["cleanup"]["description"]
    assert admit(_with({"onFailure": {"keep": "Workers"}}))  # the server refuses it too


def test_status_debug_round_trips():
    status = ExtractionJobStatus(debug=DebugRecord(config_map="campaign-debug", failed_files=2,
                                                   saved_time="2026-11-22T12:00:00Z"))
    wire = status.to_wire()
    assert wire["debug"] == {"configMap": "campaign-debug", "failedFiles": 2, "savedTime": "2026-11-22T12:00:00Z",
                             "message": ""}
    assert ExtractionJobStatus.model_validate(copy.deepcopy(wire)) == status
    assert "debug" not in ExtractionJobStatus().to_wire()  # absent until a finished job has one
    debug = root_schema(load_crd())["properties"]["status"]["properties"]["debug"]
    assert set(debug["properties"]) == {"configMap", "failedFiles", "savedTime", "message"}
