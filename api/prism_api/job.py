"""The whole ExtractionJob object (apiVersion, kind, metadata, spec, status)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from .child_names import MAX_JOB_NAME_LENGTH
from .fields import DNS1035_LABEL, PrismModel
from .job_spec import ExtractionJobSpec
from .job_status import ExtractionJobStatus

GROUP = "prism.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ExtractionJob"
PLURAL = "extractionjobs"


class ObjectMeta(PrismModel):
    """The parts of metadata Prism reads; everything else Kubernetes keeps is allowed through."""

    model_config = {**PrismModel.model_config, "extra": "allow"}

    name: str = Field(description="Job name.")
    namespace: str | None = Field(default=None)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None

    @field_validator("name")
    @classmethod
    def _child_safe_name(cls, name: str) -> str:
        import re

        if len(name) > MAX_JOB_NAME_LENGTH:
            raise PydanticCustomError(
                "name_too_long",
                "must be at most {limit} characters so the RayCluster and RayJob names stay within "
                "KubeRay's 47 (got {length}: '{got}')",
                {"limit": MAX_JOB_NAME_LENGTH, "length": len(name), "got": name},
            )
        if not re.match(DNS1035_LABEL, name):
            raise PydanticCustomError(
                "bad_name",
                "must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter "
                "(got '{got}')",
                {"got": name},
            )
        return name


class ExtractionJob(PrismModel):
    """An ExtractionJob manifest."""

    model_config = {**PrismModel.model_config, "extra": "forbid"}

    api_version: Literal["prism.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ExtractionJob"]
    metadata: ObjectMeta
    spec: ExtractionJobSpec
    status: ExtractionJobStatus | None = None
