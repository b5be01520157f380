"""Cross-field rules of the spec: the mistakes a user would trip over that no single field shows.

Each rule yields (field path relative to `spec`, message). Paths use the wire (camelCase) names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .extractor_options import known_list, unknown_options
from .point_payload import RESERVED_KEYS

# Kinds whose output is a named vector, never a payload key.
VECTOR_KINDS = ("text-embedding", "image-embedding")

if TYPE_CHECKING:
    from .job_spec import ExtractionJobSpec

RuleError = tuple[str, str]


def spec_rule_errors(spec: ExtractionJobSpec) -> list[RuleError]:
    return [*_extractor_rules(spec), *_cluster_rules(spec), *_source_rules(spec), *_preprocess_rules(spec),
            *_cleanup_rules(spec)]


def _extractor_rules(spec: ExtractionJobSpec) -> Iterator[RuleError]:
    seen: dict[str, int] = {}
    gpu_groups = [g for g in spec.cluster.worker_groups if g.gpus > 0]
    most_gpus = max((g.gpus for g in gpu_groups), default=0)
    for i, ex in enumerate(spec.extractors):
        where = f"extractors[{i}]"
        if ex.name in seen:
            yield (f"{where}.name", f"must be unique (got {ex.name!r}, also used by extractors[{seen[ex.name]}])")
        if ex.name in RESERVED_KEYS and ex.kind not in VECTOR_KINDS:
            yield (f"{where}.name", f"{ex.name!r} is a payload key every point carries (this extractor's output "
                   f"would overwrite it); choose another name (reserved for extractors other than "
                   f"{' and '.join(VECTOR_KINDS)}: {', '.join(sorted(RESERVED_KEYS))})")
        seen.setdefault(ex.name, i)
        for option in unknown_options(ex.kind, ex.options):
            yield (f"{where}.options.{option}", f"not an option of kind {ex.kind} (its options: {known_list(ex.kind)})")
        if ex.concurrency.min > ex.concurrency.max:
            yield (f"{where}.concurrency.min",
                   f"must be <= concurrency.max (got min {ex.concurrency.min} > max {ex.concurrency.max})")
        gpu = ex.resources.gpu
        if gpu > 0 and not spec.cluster.existing:
            if not gpu_groups:
                yield (f"{where}.resources.gpu",
                       f"asks for {gpu:g} GPU but no spec.cluster.workerGroups entry has gpus > 0; "
                       "add a GPU worker group or set resources.gpu: 0")
            elif gpu > most_gpus:
                yield (f"{where}.resources.gpu",
                       f"asks for {gpu:g} GPUs per actor but the largest GPU worker group has {most_gpus}")
        if gpu > 1 and gpu != int(gpu):
            yield (f"{where}.resources.gpu", f"must be a whole number above 1 (got {gpu:g})")


def _cluster_rules(spec: ExtractionJobSpec) -> Iterator[RuleError]:
    seen: set[str] = set()
    for i, g in enumerate(spec.cluster.worker_groups):
        where = f"cluster.workerGroups[{i}]"
        if g.name in seen:
            yield (f"{where}.name", f"must be unique (got {g.name!r})")
        seen.add(g.name)
        if g.min_replicas > g.max_replicas:
            yield (f"{where}.minReplicas",
                   f"must be <= maxReplicas (got {g.min_replicas} > {g.max_replicas})")


def _source_rules(spec: ExtractionJobSpec) -> Iterator[RuleError]:
    src = spec.source
    if src.endpoint and not src.uri.startswith("s3://"):
        yield ("source.endpoint", f"applies only to s3:// sources (uri is {src.uri!r}); remove it")
    scheme = src.uri.split("://", 1)[0] if "://" in src.uri else ""
    if scheme and scheme not in ("s3", "gs", "gcs", "file"):
        yield ("source.uri", f"unsupported scheme {scheme!r}; use s3://, gs://, file:// or a local path")


def _preprocess_rules(spec: ExtractionJobSpec) -> Iterator[RuleError]:
    doc = spec.preprocess.document
    if doc.overlap_chars >= doc.chunk_chars:
        yield ("preprocess.document.overlapChars",
               f"must be < chunkChars (got {doc.overlap_chars} >= {doc.chunk_chars})")


def _cleanup_rules(spec: ExtractionJobSpec) -> Iterator[RuleError]:
    on_failure = spec.cleanup.on_failure
    if on_failure.keep == "None" and on_failure.ttl_seconds is not None:
        yield ("cleanup.onFailure.ttlSeconds",
               f"applies only with keep Cluster or Head (got ttlSeconds {on_failure.ttl_seconds} with keep None, "
               "where ttlSecondsAfterFinished applies); set keep or remove ttlSeconds")
    if on_failure.keep != "None" and spec.cluster.existing:
        yield ("cleanup.onFailure.keep",
               f"applies only to a RayCluster the job owns (got keep {on_failure.keep} with cluster.existing "
               f"{spec.cluster.existing!r}, which Prism never deletes nor scales); remove cleanup.onFailure")


def cluster_rule_errors(spec: ExtractionJobSpec) -> list[RuleError]:
    """Rules for jobs run by the operator (not `prism run`): no embedded sink, no local paths."""
    errors: list[RuleError] = []
    if not spec.sink.qdrant.url:
        errors.append(("sink.qdrant.url",
                       "is required on Kubernetes (embedded Qdrant is only for `prism run`); "
                       "set it to your Qdrant service, e.g. http://qdrant.qdrant:6333"))
    if "://" not in spec.source.uri:
        errors.append(("source.uri",
                       f"must be s3://, gs:// or file:///<mounted path> on Kubernetes (got local path "
                       f"{spec.source.uri!r})"))
    return errors
