"""What a Serve-backed extractor is refused for before any Ray starts: `prism run` without a cluster to
call (no RAY_ADDRESS), and `serve:` on an extractor that is no embedding. No Ray, no Serve."""

from __future__ import annotations

import pytest

from prism_api import ExtractionJobSpec
from prism_pipeline.extractors import ExtractorError, build
from prism_pipeline.preflight import check_local
from prism_pipeline.serve_backed import split


def _spec(tmp_path, extractors: list[dict]) -> ExtractionJobSpec:
    (tmp_path / "a.txt").write_text("some text")
    return ExtractionJobSpec.model_validate({"source": {"uri": str(tmp_path)}, "extractors": extractors,
                                             "sink": {"qdrant": {"collection": "c"}}})


def test_prism_run_without_a_cluster_is_refused_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = _spec(tmp_path, [{"name": "plain", "kind": "text-embedding"},
                            {"name": "text", "kind": "text-embedding", "serve": {"deployment": "text"}}])
    found = [f for f in check_local(spec, cores=2) if not f.warning]
    assert [f.path for f in found] == ["spec.extractors[1].serve"]
    assert found[0].message.startswith("names Serve deployment search/text, which only a running Ray cluster serves, "
                                       "but RAY_ADDRESS is not set")
    assert "prism serve" in found[0].message and "remove serve" in found[0].message


def test_with_ray_address_the_run_checks_the_deployment_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    spec = _spec(tmp_path, [{"name": "text", "kind": "text-embedding", "serve": {"deployment": "text"}}])
    assert [f for f in check_local(spec, cores=2) if not f.warning] == []


@pytest.mark.parametrize("kind, why", [("face-detection", "outputs a payload, not a vector"),
                                       ("shot-boundary", "runs inside the read tasks (per-file)")])
def test_serve_on_an_extractor_that_is_no_embedding_is_refused(tmp_path, kind, why):
    spec = _spec(tmp_path, [{"name": "x", "kind": kind, "serve": {"deployment": "x"}}])
    with pytest.raises(ExtractorError) as err:
        build(spec.extractors[0], "spec.extractors[0]")
    assert str(err.value) == (f"spec.extractors[0].serve: only embedding extractors can call a Serve deployment, "
                              f"and '{kind}' {why}; remove serve")


def test_a_batch_is_split_into_at_most_max_in_flight_requests_in_order():
    assert split(list(range(10)), 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert split([1, 2], 4) == [[1], [2]]
    assert split([], 4) == []


def test_a_deployment_running_other_options_is_refused():
    """The deployment reports the options it runs (the collection's record); options change vectors, so a
    job whose extractor has other options is refused, and one with the same options is not."""
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import build
    from prism_pipeline.serve_backed import mismatch

    extractor = build(ExtractorSpec(name="text", kind="text-embedding", options={"normalize": False},
                                    serve={"deployment": "text"}))
    served = {"extractor": "text", "kind": "text-embedding", "model": None, "version": extractor.version}
    assert mismatch(extractor, {**served, "options": {"normalize": False}}) is None
    problem = mismatch(extractor, {**served, "options": {}})
    assert problem and "options {}" in problem and "'normalize': False" in problem
