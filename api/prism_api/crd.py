"""The CustomResourceDefinitions (ExtractionJob, ExtractionCronJob, SearchService), generated from the
pydantic models.

pydantic's JSON schema is turned into a Kubernetes *structural* OpenAPI v3 schema: $refs inlined,
`Optional[X]` as X with `nullable`, no `additionalProperties: false` (Kubernetes prunes unknown
fields instead), int-or-string quantities, `x-kubernetes-preserve-unknown-fields` only on extractor
`options`, and CEL rules (`x-kubernetes-validations`) for immutability and cheap cross-field checks.
`prism crd` prints it; tests fail when crds/extractionjob.yaml drifts from it.

What a real kube-apiserver does with a schema shapes it (docs/platform-facts.md, "A real control plane"): it
silently drops `propertyNames`, so map-key bounds become CEL rules on the map; CEL `==` ignores the
order of `x-kubernetes-list-type: map` lists, so immutability rules also compare their key order;
root-level CEL rules report no field, so `metadata.name` is bounded by a `metadata` schema.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, NoDefault

from .child_names import MAX_JOB_NAME_LENGTH
from .conventions import FILES_COLLECTION_SUFFIX, PRISM_MARK
from .cron_job import (
    CRON_KIND,
    CRON_PLURAL,
    MAX_CRON_NAME_LENGTH,
    ExtractionCronJobSpec,
    ExtractionCronJobStatus,
)
from .fields import DNS1035_LABEL
from .job import GROUP, KIND, PLURAL, VERSION
from .job_spec import ExtractionJobSpec
from .job_status import ExtractionJobStatus
from .search_service import (
    MAX_SEARCH_NAME_LENGTH,
    SEARCH_KIND,
    SEARCH_PLURAL,
    SEARCH_SHORT_NAMES,
    SearchServiceSpec,
    SearchServiceStatus,
)

# The fields a user may change on a live job; everything else in spec is fixed at creation.
MUTABLE_SPEC_FIELDS = ("suspend", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "cleanup")

_DROP_KEYS = {"title", "additionalProperties"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also publish defaults that come from default_factory, so the API server fills them in."""

    def get_default_value(self, schema):  # noqa: D102 - pydantic hook
        if "default_factory" in schema and not schema.get("default_factory_takes_data"):
            return schema["default_factory"]()
        return schema.get("default", NoDefault)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any) -> Any:
    """pydantic JSON schema (draft 2020-12) -> Kubernetes structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.get("anyOf")
    if any_of and any(b.get("type") == "null" for b in any_of):
        rest = [b for b in any_of if b.get("type") != "null"]
        node.pop("anyOf")
        if len(rest) == 1:
            node = {**rest[0], **node}
            node["nullable"] = True
        else:
            node["anyOf"] = rest
            node["nullable"] = True
    if node.get("x-kubernetes-int-or-string"):
        pattern, max_len = node.pop("pattern", None), node.pop("maxLength", None)
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if pattern:
            node["pattern"] = pattern
        if max_len:
            node["maxLength"] = max_len
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node["type"] = "object"
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"], node["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "default" in node:
        node["default"] = _without_nulls(node["default"])
        if node["default"] is None:
            node.pop("default")
    additional = node.get("additionalProperties")
    key_rule = _key_rule(node.pop("propertyNames", None))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key == "$defs":
            continue
        if key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = _structural(value)
        else:
            out[key] = value
    if isinstance(additional, dict):  # a map: dict[str, X]
        out["additionalProperties"] = _structural(additional)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if key_rule:
        out.setdefault("x-kubernetes-validations", []).append(key_rule)
    return out


def _key_rule(names: dict[str, Any] | None) -> dict[str, str] | None:
    """A map's key bounds (pydantic's `propertyNames`, which the API server drops) as a CEL rule.

    Only length bounds: a pattern would need `k.matches()`, whose estimated cost on keys of
    unbounded length over an unbounded map exceeds the server's CEL budget.
    """
    if not names:
        return None
    unsupported = set(names) - {"maxLength", "minLength"}
    if unsupported:
        raise ValueError(f"map-key constraints {sorted(unsupported)} cannot be expressed within the CEL cost budget")
    checks, words = [], []
    if "minLength" in names:
        checks.append(f"k.size() >= {names['minLength']}")
        words.append(f"at least {names['minLength']}")
    if "maxLength" in names:
        checks.append(f"k.size() <= {names['maxLength']}")
        words.append(f"at most {names['maxLength']}")
    return {
        "rule": f"self.all(k, {' && '.join(checks)})",
        "message": f"every key must be {' and '.join(words)} characters long",
    }


def _without_nulls(value: Any) -> Any:
    """Defaults built by default_factory carry unset optionals as null; the API server wants them absent."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _strip_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_defaults(n) for n in node]
    return node


def _schema_of(model) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_WithFactoryDefaults)
    return _structural(_resolve(raw, raw.get("$defs", {})))


def _is_list_map(node: dict[str, Any]) -> bool:
    return node.get("type") == "array" and node.get("x-kubernetes-list-type") == "map"


def _key_order(node: dict[str, Any], new: str, old: str) -> str:
    """`new` and `old` list the keys of list-map `node` in the same order (CEL `==` ignores it)."""
    keys = node["x-kubernetes-list-map-keys"]
    key = f"e.{keys[0]}" if len(keys) == 1 else "[" + ", ".join(f"e.{k}" for k in keys) + "]"
    return f"{new}.map(e, {key}) == {old}.map(e, {key})"


def _order_clauses(node: dict[str, Any], new: str, old: str) -> list[str]:
    """Order checks for every list-map at or below `node` (reached through object properties).

    Called under `new == old`, so an optional field is present in both or in neither: one has()
    guard on `new` suffices.
    """
    clauses = [_key_order(node, new, old)] if _is_list_map(node) else []
    if node.get("type") == "array":
        if _list_maps_within(node.get("items") or {}):
            raise NotImplementedError(f"a list-map inside the items of {new}: compare its key order per item")
        return clauses
    required = set(node.get("required", []))
    for name, sub in (node.get("properties") or {}).items():
        for clause in _order_clauses(sub, f"{new}.{name}", f"{old}.{name}"):
            clauses.append(clause if name in required else f"(!has({new}.{name}) || {clause})")
    if _list_maps_within(node.get("additionalProperties") or {}):
        raise NotImplementedError(f"a list-map inside the values of map {new}")
    return clauses


def _list_maps_within(node: dict[str, Any]) -> bool:
    if _is_list_map(node):
        return True
    subs = [*(node.get("properties") or {}).values(), node.get("items"), node.get("additionalProperties")]
    return any(_list_maps_within(sub) for sub in subs if isinstance(sub, dict))


def _immutability_rules(spec_schema: dict[str, Any]) -> list[dict[str, str]]:
    rules = []
    required = set(spec_schema.get("required", []))
    allowed = ", ".join(MUTABLE_SPEC_FIELDS)
    for field, sub in spec_schema["properties"].items():
        if field in MUTABLE_SPEC_FIELDS:
            continue
        new, old = f"self.{field}", f"oldSelf.{field}"
        same = " && ".join([f"{new} == {old}", *_order_clauses(sub, new, old)])
        rule = (same if field in required else
                f"has({new}) == has({old}) && (!has({new}) || " + (f"({same})" if "&&" in same else same) + ")")
        rules.append({
            "rule": rule,
            "message": f"spec.{field} is immutable after creation (only {allowed} may change); "
                       "create a new ExtractionJob instead",
            "fieldPath": f".{field}",
            "reason": "FieldValueForbidden",
        })
    return rules


def _collection_rule() -> dict[str, str]:
    """On an object with a `collection`: Prism's own record beside each collection is not one to name."""
    return {
        "rule": f"!self.collection.contains('{PRISM_MARK}')",
        "message": f"collection must not contain '{PRISM_MARK}': Prism keeps <collection>{FILES_COLLECTION_SUFFIX} "
                   "beside each collection for its own records",
        "fieldPath": ".collection",
    }


_WORKER_GROUP_RULE = {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must be <= maxReplicas"}


def _add_cross_field_rules(spec: dict[str, Any], immutable: bool = True) -> None:
    """The cheap cross-field CEL rules of an ExtractionJob spec; with `immutable`, also the rules
    that fix every field but MUTABLE_SPEC_FIELDS (not for a template, which may change)."""
    props = spec["properties"]
    conc = props["extractors"]["items"]["properties"]["concurrency"]
    conc["x-kubernetes-validations"] = [{
        "rule": "self.min <= self.max",
        "message": "concurrency.min must be <= concurrency.max",
    }]
    group = props["cluster"]["properties"]["workerGroups"]["items"]
    group["x-kubernetes-validations"] = [dict(_WORKER_GROUP_RULE)]
    doc = props["preprocess"]["properties"]["document"]
    doc["x-kubernetes-validations"] = [{
        "rule": "self.overlapChars < self.chunkChars",
        "message": "overlapChars must be < chunkChars",
    }]
    source = props["source"]
    source["x-kubernetes-validations"] = [{
        "rule": "!has(self.endpoint) || self.uri.startsWith('s3://')",
        "message": "endpoint applies only to s3:// sources",
    }]
    qdrant = props["sink"]["properties"]["qdrant"]
    qdrant["x-kubernetes-validations"] = [_collection_rule()]
    if immutable:
        spec.setdefault("x-kubernetes-validations", []).extend(_immutability_rules(spec))


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Job phase."},
        {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent",
         "description": "Percent of files finished."},
        {"name": "Files", "type": "string", "jsonPath": ".status.progress.summary",
         "description": "Files done/total."},
        {"name": "Points", "type": "integer", "jsonPath": ".status.progress.pointsWritten",
         "description": "Points written to Qdrant."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1,
         "description": "Why the job is in this phase."},
        {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt", "priority": 1,
         "description": "Current attempt."},
        {"name": "Cluster", "type": "string", "jsonPath": ".status.rayCluster", "priority": 1,
         "description": "The RayCluster."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _crd(kind: str, plural: str, short_names: list[str], description: str, spec: dict[str, Any],
         status: dict[str, Any], max_name_length: int, columns: list[dict[str, Any]]) -> dict[str, Any]:
    status.pop("required", None)
    root = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"{GROUP}/{VERSION}"},
            "kind": {"type": "string", "description": kind},
            # The API server allows only name/generateName constraints here, with nothing else on
            # `metadata` itself; unlike a root CEL rule, it reports errors at metadata.name.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": max_name_length, "pattern": DNS1035_LABEL},
                },
            },
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "prism", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["prism", "all"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def build_crd() -> dict[str, Any]:
    """The ExtractionJob CRD."""
    spec = _schema_of(ExtractionJobSpec)
    _add_cross_field_rules(spec)
    return _crd(KIND, PLURAL, ["xj", "xjob"],
                "An ExtractionJob reads files, runs every extractor over each decoded item once on "
                "a KubeRay cluster, and writes the results to a Qdrant collection.",
                spec, _strip_defaults(_schema_of(ExtractionJobStatus)), MAX_JOB_NAME_LENGTH, _printer_columns())


def _cron_printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule", "description": "Cron schedule."},
        {"name": "Timezone", "type": "string", "jsonPath": ".spec.timeZone", "priority": 1,
         "description": "Time zone of the schedule."},
        {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "description": "No new runs."},
        {"name": "Active", "type": "string", "jsonPath": ".status.active[*].name", "description": "Runs not finished."},
        {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime",
         "description": "Scheduled time of the last run."},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime",
         "description": "The next scheduled time."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1,
         "description": "Why the schedule is in this state."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_cron_crd() -> dict[str, Any]:
    """The ExtractionCronJob CRD: its template is an ExtractionJob spec with the same checks, all
    mutable (a change applies to the next run)."""
    spec = _schema_of(ExtractionCronJobSpec)
    _add_cross_field_rules(spec["properties"]["jobTemplate"]["properties"]["spec"], immutable=False)
    return _crd(CRON_KIND, CRON_PLURAL, ["xcj"],
                "An ExtractionCronJob creates ExtractionJobs on a cron schedule, as a CronJob creates Jobs; "
                "with incremental runs each processes only new and changed files.",
                spec, _strip_defaults(_schema_of(ExtractionCronJobStatus)), MAX_CRON_NAME_LENGTH,
                _cron_printer_columns())


def _search_printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Service phase."},
        {"name": "Collection", "type": "string", "jsonPath": ".spec.collection", "description": "The collection served."},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas",
         "description": "Serve replicas running, over all deployments."},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1,
         "description": "The HTTP endpoint in the cluster."},
        {"name": "Models", "type": "string", "jsonPath": ".status.models[*].version", "priority": 1,
         "description": "The model versions served."},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1,
         "description": "Why the service is in this phase."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _add_search_rules(spec: dict[str, Any]) -> None:
    """The cheap cross-field CEL rules of a SearchService spec (every field may change: the operator
    rolls a change out to the RayService)."""
    props = spec["properties"]
    spec["x-kubernetes-validations"] = [_collection_rule()]
    props["deployments"]["items"]["properties"]["replicas"]["x-kubernetes-validations"] = [{
        "rule": "self.min <= self.max",
        "message": "replicas.min must be <= replicas.max",
    }]
    props["deployments"]["items"]["x-kubernetes-validations"] = [{
        "rule": "self.maxBatchSize <= self.maxOngoingRequests",
        "message": "maxBatchSize must be <= maxOngoingRequests: a replica never holds more requests than "
                   "maxOngoingRequests, so a larger batch never fills and every batch waits batchWaitTimeoutMs",
        "fieldPath": ".maxBatchSize",
    }]
    for groups in ("workerGroups", "batchWorkerGroups"):
        props["cluster"]["properties"][groups]["items"]["x-kubernetes-validations"] = [dict(_WORKER_GROUP_RULE)]


def build_search_crd() -> dict[str, Any]:
    """The SearchService CRD."""
    spec = _schema_of(SearchServiceSpec)
    _add_search_rules(spec)
    return _crd(SEARCH_KIND, SEARCH_PLURAL, list(SEARCH_SHORT_NAMES),
                "A SearchService serves one collection an ExtractionJob filled: a KubeRay RayService runs a Ray "
                "Serve deployment per embedding extractor, at the model version recorded in the collection, "
                "behind an HTTP API (POST /embed, POST /search, GET /info).",
                spec, _strip_defaults(_schema_of(SearchServiceStatus)), MAX_SEARCH_NAME_LENGTH,
                _search_printer_columns())
