"""Prism pipeline: Ray Data extraction, extractors and sinks. Submodules import their own deps."""
