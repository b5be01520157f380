"""End-to-end suite on a real cluster (kind + KubeRay + Qdrant + MinIO); see e2e/README.md."""
