"""Every ExtractionJob in examples/ and e2e/ is admitted by our CRD (defaults, OpenAPI schema, CEL
rules) and parses with the pydantic contract; jobs meant for a cluster pass its cluster rules too.
e2e/manifests/bad/ holds jobs the API server admits but the operator must refuse."""

from __future__ import annotations

import pytest

from prism_api import SpecError, parse_job
from tests.spec.crd_check import admit

from .repo_files import documents, rel, repo_files

BAD_PREFIX = "e2e/manifests/bad/"
JOBS = [(p, i, d) for p in repo_files("examples/*.yaml", "examples/*.yml", "e2e/*.yaml", "e2e/*.yml")
        for i, d in enumerate(documents(p))
        if isinstance(d, dict) and d.get("kind") == "ExtractionJob"]
GOOD = [j for j in JOBS if not rel(j[0]).startswith(BAD_PREFIX)]
BAD = [j for j in JOBS if rel(j[0]).startswith(BAD_PREFIX)]


def job_id(job) -> str:
    path, index, doc = job
    return f"{rel(path)}:{doc.get('metadata', {}).get('name', index)}"


def is_cluster_job(doc: dict) -> bool:
    """A job with a Qdrant server is meant for the operator; without one it is a `prism run` job."""
    return bool(doc.get("spec", {}).get("sink", {}).get("qdrant", {}).get("url"))


def test_examples_and_e2e_jobs_are_found():
    names = {job_id(j) for j in GOOD}
    assert any(n.startswith("examples/quickstart.yaml") for n in names), names
    assert {"e2e/manifests/jobs/success.yaml:e2e-success", "e2e/manifests/jobs/retry.yaml:e2e-retry"} <= names
    assert BAD, "e2e/manifests/bad/ should hold at least one job the operator must refuse"


@pytest.mark.parametrize("job", GOOD, ids=job_id)
def test_job_is_admitted_by_the_crd(job):
    path, _, doc = job
    assert admit(doc) == [], f"{rel(path)}: the CRD rejects it"


@pytest.mark.parametrize("job", GOOD, ids=job_id)
def test_job_parses_with_the_contract(job):
    path, _, doc = job
    target = "cluster" if is_cluster_job(doc) else "any"
    try:
        parse_job(doc, target=target)
    except SpecError as exc:
        pytest.fail(f"{rel(path)} (target={target}): {exc}")


def test_e2e_jobs_are_cluster_jobs():
    e2e = [j for j in GOOD if rel(j[0]).startswith("e2e/")]
    assert e2e and all(is_cluster_job(doc) for _, _, doc in e2e)


@pytest.mark.parametrize("job", BAD, ids=job_id)
def test_bad_job_is_admitted_but_refused_for_a_cluster(job):
    """The API server accepts it, so the operator must be the one to say InvalidSpec (tests/e2e checks that)."""
    path, _, doc = job
    assert admit(doc) == [], f"{rel(path)}: meant to pass the CRD and fail only the operator's checks"
    with pytest.raises(SpecError, match=r"spec\.source\.uri"):
        parse_job(doc, target="cluster")
