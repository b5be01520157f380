"""Checking objects against the CRD the way the API server does: structural defaulting, the
OpenAPI v3 schema (openapi-schema-validator), then the CEL rules (cel-python), incl. transition rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import yaml
from openapi_schema_validator import OAS30Validator

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "extractionjob.yaml"


def load_crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def root_schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict, obj: Any) -> Any:
    """Structural defaulting: fill missing properties that have a default, recursively."""
    if isinstance(obj, dict) and schema.get("properties"):
        for name, sub in schema["properties"].items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                obj[name] = apply_defaults(sub, obj[name])
    elif isinstance(obj, list) and "items" in schema:
        return [apply_defaults(schema["items"], o) for o in obj]
    return obj


def schema_errors(schema: dict, obj: Any) -> list[str]:
    validator = OAS30Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


_env = celpy.Environment()


def _typed(schema: dict, value: Any) -> Any:
    """CEL is typed by the schema: a `number` field is always a double, even when YAML wrote 1."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and "properties" in schema:
        return {k: _typed(schema["properties"].get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [_typed(schema["items"], v) for v in value]
    return value


def cel_violations(schema: dict, new: Any, old: Any = None, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule against `new` (and `old` for transition rules)."""
    out: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        is_transition = "oldSelf" in text
        if is_transition and old is None:
            continue
        activation = {"self": celpy.json_to_cel(_typed(schema, new))}
        if is_transition:
            activation["oldSelf"] = celpy.json_to_cel(_typed(schema, old))
        result = _env.program(_env.compile(text)).evaluate(activation)
        if not bool(result):
            out.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(new, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in new:
                child_old = old.get(name) if isinstance(old, dict) else None
                out += cel_violations(sub, new[name], child_old, f"{path}.{name}" if path else name)
    elif isinstance(new, list) and "items" in schema:
        keys = schema.get("x-kubernetes-list-map-keys")
        for i, item in enumerate(new):
            child_old = None
            if keys and isinstance(old, list):  # transition rules pair list-map items by key
                child_old = next((o for o in old if all(o.get(k) == item.get(k) for k in keys)), None)
            out += cel_violations(schema["items"], item, child_old, f"{path}[{i}]")
    return out


def admit(obj: dict, old: dict | None = None, crd: dict | None = None) -> list[str]:
    """What the API server would say to a create (old=None) or an update: [] means admitted."""
    schema = root_schema(crd or load_crd())
    new = apply_defaults(schema, copy.deepcopy(obj))
    errors = schema_errors(schema, new)
    if errors:
        return errors
    prior = apply_defaults(schema, copy.deepcopy(old)) if old is not None else None
    return cel_violations(schema, new, prior)
