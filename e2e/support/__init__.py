"""Helpers of the e2e suite: kubectl, deadlines, port-forwards, Qdrant's HTTP API, MinIO uploads."""
