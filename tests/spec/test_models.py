"""The job contract's models: defaults, wire form, names, status phases."""

from __future__ import annotations

import pytest
import yaml

from prism_api import (
    MAX_JOB_NAME_LENGTH,
    ExtractionJobStatus,
    Phase,
    SpecError,
    parse_job,
    parse_spec,
    ray_cluster_name,
    ray_job_name,
)
from prism_api.fields import quantity_value

from .crd_check import ROOT


def _minimal() -> dict:
    return yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())


def test_defaults_are_filled_in():
    spec = parse_job(_minimal()).spec
    assert spec.preprocess.video.frames_per_second == 1
    assert spec.preprocess.image.max_side == 1024
    assert spec.extractors[0].concurrency.min == 1 and spec.extractors[0].concurrency.max == 1
    assert spec.sink.qdrant.batch_size == 256
    assert spec.cluster.ray_version == "2.60.0"
    assert spec.cluster.worker_groups[0].name == "cpu"
    assert spec.retries.limit == 2 and spec.incremental is True and spec.suspend is False


def test_wire_form_round_trips():
    job = parse_job(yaml.safe_load((ROOT / "examples" / "gpu-video.yaml").read_text()))
    wire = job.spec.to_wire()
    assert "workerGroups" in wire["cluster"] and "apiKeySecretRef" in wire["sink"]["qdrant"]
    assert parse_spec(wire) == job.spec


def test_numbers_for_quantities_are_accepted():
    doc = _minimal()
    doc["spec"]["cluster"] = {"workerGroups": [{"name": "cpu", "cpu": 8, "memory": "16Gi"}]}
    assert parse_job(doc).spec.cluster.worker_groups[0].cpu == "8"
    assert quantity_value("500m") == 0.5 and quantity_value("4Gi") == 4 * 2**30


def test_parse_spec_reports_paths_under_spec():
    with pytest.raises(SpecError) as info:
        parse_spec({"source": {"uri": "s3://b/"}, "extractors": [], "sink": {"qdrant": {"collection": "c"}}})
    assert [str(e) for e in info.value.errors] == ["spec.extractors: must have at least 1 entry (got 0)"]


def test_every_problem_is_reported_at_once():
    doc = _minimal()
    doc["spec"]["extractors"][0]["batchSize"] = 0
    doc["spec"]["sink"]["qdrant"]["batchSize"] = -1
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    paths = [e.path for e in info.value.errors]
    assert paths == ["spec.extractors[0].batchSize", "spec.sink.qdrant.batchSize"]


def test_not_a_mapping():
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_job(["not", "a", "job"])


def test_child_names_fit_kuberay():
    name = "a" * MAX_JOB_NAME_LENGTH
    cluster = ray_cluster_name("a-namespace", name, "0d7c7c1e-uid")
    assert len(ray_job_name(cluster, 99)) <= 47
    assert ray_cluster_name("ns", "job", "uid") == ray_cluster_name("ns", "job", "uid")
    assert ray_cluster_name("ns", "job", "uid-1") != ray_cluster_name("ns", "job", "uid-2")
    with pytest.raises(ValueError):
        ray_job_name(cluster, 100)


def test_phases():
    assert [p for p in Phase if p.is_terminal()] == [Phase.SUCCEEDED, Phase.FAILED]
    status = ExtractionJobStatus()
    wire = status.to_wire()
    assert wire["phase"] == "Pending" and wire["progress"]["filesTotal"] == 0
    assert "dashboardURL" in ExtractionJobStatus.model_validate({"dashboardURL": "http://x"}).to_wire()
