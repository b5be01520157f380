"""A failed attempt is retried as a new RayJob on the same RayCluster (see jobs/retry.yaml)."""

from __future__ import annotations

import pytest

from prism_api.conventions import ATTEMPT_LABEL

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 1500


def test_failed_attempt_is_retried_on_the_same_cluster(jobs):
    name = jobs.apply("jobs/retry.yaml")
    clusters: set[str] = set()
    attempts: list[int] = []

    def watch(obj):
        st = (obj or {}).get("status") or {}
        if st.get("rayCluster"):
            clusters.add(st["rayCluster"])
        if st.get("attempt") and (not attempts or attempts[-1] != st["attempt"]):
            attempts.append(st["attempt"])

    obj = jobs.wait_phase(name, ("Succeeded",), RUN_TIMEOUT, on_poll=watch)
    st = obj["status"]
    print(f"attempts seen: {attempts}; clusters seen: {clusters}")

    assert st["attempt"] == 2, f"attempt 1 fails on purpose, attempt 2 succeeds; status says {st['attempt']}"
    assert attempts == sorted(attempts), attempts
    assert clusters == {st["rayCluster"]}, f"a retry must reuse the RayCluster; saw {clusters}"
    assert jobs.ray_cluster(st["rayCluster"]) is not None

    by_attempt = {rj["metadata"]["labels"].get(ATTEMPT_LABEL): rj for rj in jobs.ray_jobs(name)}
    second = by_attempt.get("2")
    assert second is not None, f"no RayJob labelled {ATTEMPT_LABEL}=2: {sorted(by_attempt)}"
    assert second["metadata"]["name"] == st["rayJob"]
    assert second["spec"]["clusterSelector"]["ray.io/cluster"] == st["rayCluster"]
    assert second["status"]["jobStatus"] == "SUCCEEDED"
    first = by_attempt.get("1")
    if first is not None:  # the operator may keep or remove a finished attempt's RayJob
        assert first["spec"]["clusterSelector"]["ray.io/cluster"] == st["rayCluster"]
        assert first["status"]["jobStatus"] == "FAILED", first.get("status")
