"""Every example manifest is valid (model, CRD schema, CEL); every bad one is rejected with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prism_pipeline.spec import SpecError, parse_job

from .crd_check import ROOT, admit

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
    for doc in yaml.safe_load_all(path.read_text()):
        job = parse_job(doc)
        assert job.metadata.name
        assert admit(doc) == [], f"{path.name} rejected by the CRD"


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


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_crd_rejects_what_it_can_express(path):
    """`# schema: reject` / `# cel: reject` mark the manifests the API server itself refuses."""
    doc = yaml.safe_load(path.read_text())
    verdict = admit(doc)
    if _header(path, "schema") == ["reject"] or _header(path, "cel") == ["reject"]:
        assert verdict, f"the CRD admitted {path.name}"
    else:
        # Rules only the model can check (GPU placement, plug-in paths, secrets): the operator
        # rejects these with InvalidSpec before creating anything.
        assert verdict == [], f"unexpected CRD rejection of {path.name}: {verdict}"
