"""Every example manifest is valid (model, CRD schema, CEL); every bad one is rejected with its field path.

Each bad manifest states what the API server does with it in ONE header (the real-server tier in
tests/cluster reads the same headers, so keep the names exact):
  # server: reject         refused whatever fieldValidation says (schema, CEL, duplicate list-map
                           keys, an apiVersion/kind that is not served)
  # server: unknown-field  fieldValidation=Strict (kubectl) refuses it naming the field; Warn (the
                           default for clients that send none) prunes the field, warns and admits
  # server: admit          admitted: the operator must refuse it (phase Failed, InvalidSpec) and
                           create no children
and optionally `# server-error: <substring>` that the server's error (and the offline one) contains.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prism_api import SpecError, parse_job

from .crd_check import ROOT, admit, prune, unknown_fields

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))


def _header(path: Path, key: str) -> list[str]:
    prefix = f"# {key}: "
    return [line[len(prefix):].rstrip() for line in path.read_text().splitlines() if line.startswith(prefix)]


def test_there_are_examples_and_bad_manifests():
    names = {p.name for p in EXAMPLES}
    assert {"minimal.yaml", "gpu-video.yaml", "quickstart.yaml"} <= names
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_model_and_crd(path):
    from prism_api.cron_job import CRON_KIND, parse_cron_job
    from prism_api.search_service import SEARCH_KIND, parse_search_service

    parsers = {CRON_KIND: parse_cron_job, SEARCH_KIND: parse_search_service}
    crds = {CRON_KIND: "extractioncronjob.yaml", SEARCH_KIND: "searchservice.yaml"}
    for doc in yaml.safe_load_all(path.read_text()):
        kind = doc.get("kind")
        parsed = parsers.get(kind, parse_job)(doc)
        assert parsed.metadata.name
        crd = yaml.safe_load((ROOT / "crds" / crds[kind]).read_text()) if kind in crds else None
        assert admit(doc, crd=crd, strict=True) == [], f"{path.name} rejected by the CRD"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_manifest_is_rejected_naming_its_field(path):
    expected = _header(path, "expect")
    assert expected, f"{path.name} lacks an '# expect:' line"
    target = (_header(path, "for") or ["any"])[0]
    doc = yaml.safe_load(path.read_text())
    with pytest.raises(SpecError) as info:
        parse_job(doc, target=target)
    messages = [str(e) for e in info.value.errors]
    for want in expected:
        assert any(m.startswith(want) for m in messages), f"wanted {want!r}, got {messages}"


VERDICTS = ("reject", "unknown-field", "admit")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_manifest_states_one_server_verdict(path):
    verdicts = _header(path, "server")
    assert len(verdicts) == 1 and verdicts[0] in VERDICTS, f"{path.name}: want one '# server:' of {VERDICTS}"
    assert not _header(path, "schema") and not _header(path, "cel"), f"{path.name}: obsolete header"
    wanted = _header(path, "server-error")
    assert len(wanted) <= 1 and (not wanted or verdicts[0] != "admit"), f"{path.name}: bad '# server-error:'"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_offline_admission_agrees_with_the_server(path):
    (verdict,) = _header(path, "server")
    doc = yaml.safe_load(path.read_text())
    strict, warn, unknown = admit(doc, strict=True), admit(doc), unknown_fields(doc)
    if verdict == "reject":
        assert strict and warn, f"the CRD admitted {path.name}"
        assert unknown == [], f"{path.name} is refused for its unknown fields only under Strict: {unknown}"
        errors = warn
    elif verdict == "unknown-field":
        assert unknown, f"{path.name} has no unknown field"
        assert strict == [f'unknown field "{p}"' for p in unknown]
        pruned, warnings = prune(doc)
        assert warnings == strict and unknown_fields(pruned) == []
        assert warn == [], f"{path.name} should be admitted once pruned: {warn}"
        errors = strict
    else:
        # Rules only the model can check (GPU placement, plug-in paths, secrets): the operator
        # rejects these with InvalidSpec before creating anything.
        assert unknown == [] and strict == [] and warn == [], f"unexpected CRD rejection of {path.name}"
        errors = []
    for want in _header(path, "server-error"):
        assert any(want in e for e in errors), f"{path.name}: wanted {want!r} in {errors}"
