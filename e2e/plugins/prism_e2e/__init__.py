"""Plug-in extractors the e2e suite's jobs use; e2e/worker/Dockerfile puts them on the worker image."""
