"""Every SearchService in examples/ and e2e/ is admitted by its CRD (defaults, OpenAPI schema, CEL rules,
strict field validation) and parses with the pydantic contract, as ExtractionJobs are (test_extractionjobs.py)."""

from __future__ import annotations

import pytest
import yaml

from prism_api import SpecError
from prism_api.search_service import SEARCH_KIND, parse_search_service
from tests.spec.crd_check import ROOT, admit

from .repo_files import documents, rel, repo_files

CRD = yaml.safe_load((ROOT / "crds" / "searchservice.yaml").read_text())
SERVICES = [(p, i, d) for p in repo_files("examples/*.yaml", "examples/*.yml", "e2e/*.yaml", "e2e/*.yml")
            for i, d in enumerate(documents(p))
            if isinstance(d, dict) and d.get("kind") == SEARCH_KIND]


def service_id(service) -> str:
    path, index, doc = service
    return f"{rel(path)}:{doc.get('metadata', {}).get('name', index)}"


def test_an_example_search_service_is_found():
    assert any(service_id(s).startswith("examples/search-service.yaml") for s in SERVICES), [
        service_id(s) for s in SERVICES]


@pytest.mark.parametrize("service", SERVICES, ids=service_id)
def test_search_service_is_admitted_by_the_crd(service):
    path, _, doc = service
    assert admit(doc, crd=CRD, strict=True) == [], f"{rel(path)}: the CRD rejects it"


@pytest.mark.parametrize("service", SERVICES, ids=service_id)
def test_search_service_parses_with_the_contract(service):
    path, _, doc = service
    try:
        parse_search_service(doc)
    except SpecError as exc:
        pytest.fail(f"{rel(path)}: {exc}")
