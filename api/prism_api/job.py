"""The whole ExtractionJob object (apiVersion, kind, metadata, spec, status)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .child_names import MAX_JOB_NAME_LENGTH
from .fields import PrismModel, check_object_name
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
        return check_object_name(name, MAX_JOB_NAME_LENGTH, "the RayCluster and RayJob names stay within KubeRay's 47")


class ExtractionJob(PrismModel):
    """An ExtractionJob manifest."""

    model_config = {**PrismModel.model_config, "extra": "forbid"}

    api_version: Literal["prism.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ExtractionJob"]
    metadata: ObjectMeta
    spec: ExtractionJobSpec
    status: ExtractionJobStatus | None = None
