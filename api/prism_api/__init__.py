"""The Prism contract (prism.dev/v1alpha1: ExtractionJob, and SearchService in prism_api.search_service):
pydantic models, importable with pydantic alone.

Both the operator and the pipeline import this package; it imports neither.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from .child_names import MAX_JOB_NAME_LENGTH, ray_cluster_name, ray_job_name
from .errors import FieldError, SpecError, format_validation_error, validate_manifest
from .job import API_VERSION, GROUP, KIND, PLURAL, VERSION, ExtractionJob, ObjectMeta
from .job_spec import (
    BUILTIN_KINDS,
    Cluster,
    Concurrency,
    ExtractionJobSpec,
    ExtractorResources,
    ExtractorSpec,
    FailurePolicy,
    Preprocess,
    QdrantSink,
    Retries,
    SecretKeyRef,
    SecretRef,
    ServeRef,
    SinkSpec,
    SourceSpec,
    Toleration,
    WorkerGroup,
)
from .job_status import (
    MAX_FAILURE_SAMPLES,
    Condition,
    ExtractionJobStatus,
    ExtractorProgress,
    Failures,
    FailureSample,
    Phase,
    Progress,
    Usage,
)
from .rules import cluster_rule_errors
from .search_service import (
    SEARCH_KIND,
    SEARCH_PLURAL,
    SearchService,
    SearchServiceSpec,
    SearchServiceStatus,
    parse_search_service,
)

Target = Literal["any", "cluster"]


def parse_job(obj: Any, target: Target = "any") -> ExtractionJob:
    """Validate a whole manifest (a dict). Raises SpecError listing every problem.

    target="cluster" adds the rules for jobs the operator runs (a Qdrant url, a remote source).
    """
    job = validate_manifest(ExtractionJob, obj, KIND)
    if target == "cluster":
        errors = [FieldError(f"spec.{p}", m) for p, m in cluster_rule_errors(job.spec)]
        if errors:
            raise SpecError(errors)
    return job


def parse_spec(obj: Any, target: Target = "any") -> ExtractionJobSpec:
    """Validate just a spec (what the RayJob entrypoint receives)."""
    try:
        spec = ExtractionJobSpec.model_validate(obj)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, prefix=("spec",))) from None
    if target == "cluster":
        errors = [FieldError(f"spec.{p}", m) for p, m in cluster_rule_errors(spec)]
        if errors:
            raise SpecError(errors)
    return spec


__all__ = [
    "API_VERSION", "BUILTIN_KINDS", "GROUP", "KIND", "MAX_FAILURE_SAMPLES", "MAX_JOB_NAME_LENGTH", "PLURAL",
    "VERSION", "Cluster", "Concurrency", "Condition", "ExtractionJob", "ExtractionJobSpec",
    "ExtractionJobStatus", "ExtractorProgress", "ExtractorSpec", "ExtractorResources", "FailurePolicy",
    "FailureSample", "Failures", "FieldError", "ObjectMeta", "Phase", "Preprocess", "Progress", "QdrantSink",
    "Retries", "SEARCH_KIND", "SEARCH_PLURAL", "SearchService", "SearchServiceSpec", "SearchServiceStatus",
    "SecretKeyRef", "SecretRef", "ServeRef", "SinkSpec", "SourceSpec", "SpecError", "Toleration", "Usage",
    "WorkerGroup", "parse_job", "parse_search_service", "parse_spec", "ray_cluster_name", "ray_job_name",
]
