"""A spec the API server admits but the operator cannot run: Failed/InvalidSpec and no children."""

from __future__ import annotations

import pytest

from e2e.support.jobs import JOB_LABEL, condition

pytestmark = pytest.mark.e2e

TIMEOUT = 120


def test_invalid_spec_fails_without_children(jobs):
    name = jobs.apply("bad/invalid-local-source.yaml")
    obj = jobs.wait_phase(name, ("Failed",), TIMEOUT)
    st = obj["status"]
    assert st.get("reason") == "InvalidSpec", st
    messages = [st.get("message") or "", (condition(obj, "Failed") or {}).get("message") or ""]
    assert any("spec.source.uri" in m for m in messages), f"the error should name the field: {messages}"
    assert not jobs.kubectl.list("rayclusters", selector=f"{JOB_LABEL}={name}")
    assert not jobs.ray_jobs(name)
