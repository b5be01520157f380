"""Checking objects against the CRD the way kube-apiserver does (docs/platform-facts.md, "A real control plane"):
the served apiVersion/kind, unknown fields (rejected under fieldValidation=Strict, pruned under Warn,
the server default), structural defaulting, the OpenAPI v3 schema (openapi-schema-validator),
duplicate list-map keys, then the CEL rules (cel-python), incl. transition rules, with the server's
semantics: `==` on an `x-kubernetes-list-type: map` list ignores order.

Error messages carry Kubernetes-style field paths (`spec.extractors[1].name`), so a bad manifest's
`# server-error:` substring can be checked offline as well."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from openapi_schema_validator import OAS30Validator

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "extractionjob.yaml"

# Fields of the root object the API server handles itself (ObjectMeta is never pruned by the CRD schema).
_ROOT_FIELDS = {"apiVersion", "kind", "metadata"}


def load_crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def root_schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def k8s_path(parts: Iterable[Any]) -> str:
    """('spec', 'extractors', 1, 'name') -> 'spec.extractors[1].name', as field.Path prints it."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- what the server does before validation ----------------------------------------------------

def type_errors(crd: dict, obj: dict) -> list[str]:
    """An apiVersion or kind the CRD does not serve: the server has no such resource."""
    spec = crd["spec"]
    served = [f"{spec['group']}/{v['name']}" for v in spec["versions"] if v.get("served")]
    errors = []
    if obj.get("apiVersion") not in served:
        errors.append(f"apiVersion: {obj.get('apiVersion')!r} is not served (served: {', '.join(served)})")
    if obj.get("kind") != spec["names"]["kind"]:
        errors.append(f"kind: {obj.get('kind')!r} is not {spec['names']['kind']!r}")
    return errors


def _keeps_unknown(schema: dict) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def _prune(schema: dict, obj: Any, path: tuple, found: list[str], *, root: bool = False) -> Any:
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, value in obj.items():
            if root and key in _ROOT_FIELDS:
                out[key] = value  # ObjectMeta: the server checks its fields itself, not the CRD schema
            elif key in props:
                out[key] = _prune(props[key], value, (*path, key), found)
            elif isinstance(extra, dict):
                out[key] = _prune(extra, value, (*path, key), found)
            elif _keeps_unknown(schema) or extra is True:
                out[key] = value
            else:
                found.append(k8s_path((*path, key)))
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], v, (*path, i), found) for i, v in enumerate(obj)]
    return obj


def unknown_fields(obj: dict, crd: dict | None = None) -> list[str]:
    """Paths of the fields the structural schema does not declare (`spec.extractors[0].batchsize`):
    what fieldValidation=Strict rejects (`unknown field "<path>"`) and Warn prunes with a warning."""
    found: list[str] = []
    _prune(root_schema(crd or load_crd()), obj, (), found, root=True)
    return found


def prune(obj: dict, crd: dict | None = None) -> tuple[dict, list[str]]:
    """The object as the server stores it under fieldValidation=Warn, and the warnings it returns."""
    found: list[str] = []
    pruned = _prune(root_schema(crd or load_crd()), copy.deepcopy(obj), (), found, root=True)
    return pruned, [f'unknown field "{p}"' for p in found]


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


# --- validation --------------------------------------------------------------------------------

_REQUIRED = re.compile(r"^'(.+)' is a required property$")


def schema_errors(schema: dict, obj: Any) -> list[str]:
    out = []
    for e in OAS30Validator(schema).iter_errors(obj):
        missing = _REQUIRED.match(e.message) if e.validator == "required" else None
        if missing:
            out.append(f"{k8s_path([*e.absolute_path, missing.group(1)])}: Required value")
        else:
            out.append(f"{k8s_path(e.absolute_path) or '<root>'}: {e.message}")
    return out


def duplicate_keys(schema: dict, obj: Any, path: tuple = ()) -> list[str]:
    """Items of an `x-kubernetes-list-type: map` (or `set`) list that repeat a key: the server
    refuses them ("Duplicate value") whatever fieldValidation says."""
    out: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub:
                out += duplicate_keys(sub, value, (*path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        kind, seen = schema.get("x-kubernetes-list-type"), []
        for i, item in enumerate(obj):
            if kind == "map" and isinstance(item, dict):
                key = {k: item.get(k) for k in schema["x-kubernetes-list-map-keys"]}
            elif kind == "set":
                key = item
            else:
                break
            if key in seen:
                out.append(f"{k8s_path((*path, i))}: Duplicate value: {json.dumps(key)}")
            seen.append(key)
        for i, item in enumerate(obj):
            out += duplicate_keys(schema["items"], item, (*path, i))
    return out


class ListMapType(celtypes.ListType):
    """A CEL value of an `x-kubernetes-list-type: map` list: like the API server, `==` pairs items
    by their keys and ignores order (`.map(e, e.name)` gives a plain, ordered list)."""

    keys: tuple[str, ...] = ()

    def _by_key(self) -> dict:
        return {tuple(item.get(celtypes.StringType(k)) for k in self.keys): item for item in self}

    def __eq__(self, other: Any) -> Any:
        if not isinstance(other, ListMapType):
            return super().__eq__(other)
        mine, theirs = self._by_key(), other._by_key()
        return celtypes.BoolType(len(self) == len(other) and mine.keys() == theirs.keys()
                                 and all(bool(mine[k] == theirs[k]) for k in mine))

    def __ne__(self, other: Any) -> Any:
        return celtypes.BoolType(not bool(self.__eq__(other)))

    __hash__ = None


def to_cel(schema: dict, value: Any) -> Any:
    """JSON -> CEL, typed by the schema as the server does: a `number` is always a double (even
    when YAML wrote 1), and list-maps compare ignoring order."""
    if isinstance(value, dict) and ("properties" in schema or isinstance(schema.get("additionalProperties"), dict)):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        return celtypes.MapType({
            celtypes.StringType(k): to_cel(props.get(k) or (extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        })
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = [to_cel(schema["items"], v) for v in value]
        if schema.get("x-kubernetes-list-type") == "map":
            listmap = ListMapType(items)
            listmap.keys = tuple(schema["x-kubernetes-list-map-keys"])
            return listmap
        return celtypes.ListType(items)
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.DoubleType(value)
    return celpy.json_to_cel(value)


_env = celpy.Environment()


def cel_violations(schema: dict, new: Any, old: Any = None, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule against `new` (and `old` for transition rules)."""
    out: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        is_transition = "oldSelf" in text
        if is_transition and old is None:
            continue
        activation = {"self": to_cel(schema, new)}
        if is_transition:
            activation["oldSelf"] = to_cel(schema, old)
        result = _env.program(_env.compile(text)).evaluate(activation)
        if not isinstance(result, celtypes.BoolType):
            raise AssertionError(f"{path or '<root>'}: rule {text!r} did not evaluate to a bool: {result!r}")
        if not bool(result):
            where = f"{path}{rule.get('fieldPath', '')}" if path else rule.get("fieldPath", "").lstrip(".")
            out.append(f"{where or '<root>'}: {rule['message']}")
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


def admit(obj: dict, old: dict | None = None, crd: dict | None = None, *, strict: bool = False) -> list[str]:
    """What the API server would say to a create (old=None) or an update: [] means admitted.

    strict=True is fieldValidation=Strict (kubectl's default): unknown fields are errors. Otherwise
    (Warn, the default for clients that send none) they are pruned before validation.
    """
    crd = crd or load_crd()
    schema = root_schema(crd)
    errors = type_errors(crd, obj)
    if errors:
        return errors
    if strict:
        errors = [f'unknown field "{p}"' for p in unknown_fields(obj, crd)]
        if errors:
            return errors
    new = apply_defaults(schema, prune(obj, crd)[0])
    errors = schema_errors(schema, new) + duplicate_keys(schema, new)
    if errors:
        return errors
    prior = apply_defaults(schema, prune(old, crd)[0]) if old is not None else None
    return cel_violations(schema, new, prior)


def schema_nodes(node, path="$"):
    """(path, schema) for a schema and every schema under it through properties, items and
    additionalProperties."""
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


def schema_dicts(node, path="$"):
    """(path, dict) for every dict in a schema, under any keyword (anyOf, items, ...), not only properties."""
    if isinstance(node, dict):
        yield path, node
        for key, sub in node.items():
            yield from schema_dicts(sub, f"{path}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from schema_dicts(sub, f"{path}[{i}]")
