"""Every YAML file in the repository parses (all documents of multi-document files)."""

from __future__ import annotations

import fnmatch

import pytest
import yaml

from .repo_files import documents, rel, yaml_files

# Helm templates are Go templates, not YAML: tests/static/test_helm_chart.py renders them with the
# real helm and parses what they render.
FILES = [p for p in yaml_files() if not fnmatch.fnmatch(rel(p), "charts/*/templates/*")]


def test_the_repository_has_yaml_files():
    names = {rel(p) for p in FILES}
    assert "crds/extractionjob.yaml" in names and "e2e/manifests/minio.yaml" in names, sorted(names)


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_yaml_parses(path):
    try:
        docs = documents(path)
    except yaml.YAMLError as exc:
        pytest.fail(f"{rel(path)} is not valid YAML: {exc}")
    assert docs, f"{rel(path)} holds no YAML document"
