"""Pure builders: ExtractionJob -> the KubeRay objects the operator creates (plain dicts, no API calls)."""

from .labels import child_labels, owner_reference
from .raycluster import build_ray_cluster
from .rayjob import build_entrypoint, build_ray_job

__all__ = ["build_entrypoint", "build_ray_cluster", "build_ray_job", "child_labels", "owner_reference"]
