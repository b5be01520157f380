"""Checking generated objects against KubeRay's own CRD schemas (../shared/kuberay-crds), as the API
server would: the OpenAPI v3 schema, plus the fields it would silently prune (unknown to the schema)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

CRD_DIR = Path(__file__).resolve().parents[3] / "shared" / "kuberay-crds"
FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}


@cache
def schema_for(kind: str, version: str = "v1") -> dict:
    path = CRD_DIR / FILES[kind]
    if not path.is_file():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (reference data shared beside the repository); "
                    "the schema check needs ray.io_rayclusters.yaml and ray.io_rayjobs.yaml")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def pruned_fields(schema: dict, obj: Any, path: str = "") -> list[str]:
    """Fields the API server would drop because the structural schema does not know them."""
    out: list[str] = []
    if isinstance(obj, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return out
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                out += pruned_fields(props[key], value, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += pruned_fields(extra, value, f"{path}.{key}")
            elif props is not None and path != ".metadata":
                out.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            out += pruned_fields(schema["items"], item, f"{path}[{i}]")
    return out


def schema_errors(obj: dict) -> list[str]:
    schema = schema_for(obj["kind"])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OAS30Validator(schema).iter_errors(obj)]
    errors += [f"{p}: unknown to KubeRay's schema (would be pruned)" for p in pruned_fields(schema, obj)]
    return errors
