"""Prism operator: ExtractionJob -> KubeRay RayCluster + RayJob (kopf). Never imports ray or torch."""
