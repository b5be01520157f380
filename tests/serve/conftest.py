"""Every module here starts with no Ray connection in this process: it starts its own Ray (and Serve) or,
for the refusals, needs none. When the whole suite runs, an earlier folder's session-wide Ray
(tests/pipeline's `ray_session`) is still connected; it is shut down first (nothing after tests/pipeline
uses it; its own teardown then finds Ray already stopped)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module", autouse=True)
def no_leftover_ray_connection():
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    yield
