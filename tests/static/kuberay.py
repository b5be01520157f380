"""KubeRay's own CRD schemas (../shared/kuberay-crds, when present) as validators."""

from __future__ import annotations

import functools

import yaml
from openapi_schema_validator import OAS30Validator

from .repo_files import ROOT

KUBERAY_CRDS = ROOT.parent / "shared" / "kuberay-crds"


@functools.cache
def kuberay_validator(kind: str) -> OAS30Validator:
    """KubeRay's CRDs are ~1 MB of YAML each: load each once, with the C loader when there is one."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((KUBERAY_CRDS / f"ray.io_{kind.lower()}s.yaml").read_text(), Loader=loader)
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    return OAS30Validator(schema)
