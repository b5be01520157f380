"""KubeApi's handling of the answers a real API server gives (found by tests/cluster)."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from prism_operator.k8s_api import KubeApi


class _Refusing:
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message

    def create_namespaced_custom_object(self, *args, **kwargs):
        exc = ApiException(status=self.status, reason="Forbidden")
        exc.body = json.dumps({"message": self.message})
        raise exc


def _api(refusal: _Refusing) -> KubeApi:
    api = KubeApi.__new__(KubeApi)
    api._custom, api._timeout = refusal, 1.0
    from concurrent.futures import ThreadPoolExecutor
    api._executor = ThreadPoolExecutor(max_workers=1)
    return api


RAYJOB = {"kind": "RayJob", "metadata": {"name": "j-a2", "namespace": "gone"}}


async def test_a_create_in_a_namespace_being_deleted_is_told_apart_from_errors():
    import pytest

    from prism_operator.k8s_api import KubeApiError, NamespaceTerminating

    api = _api(_Refusing(403, 'rayjobs.ray.io "j-a2" is forbidden: unable to create new content in namespace '
                              "gone because it is being terminated"))
    with pytest.raises(NamespaceTerminating) as info:
        await api.create(RAYJOB)
    assert not isinstance(info.value, KubeApiError)


async def test_other_refusals_are_errors():
    import pytest

    from prism_operator.k8s_api import KubeApiError

    api = _api(_Refusing(403, 'rayjobs.ray.io is forbidden: User "x" cannot create resource'))
    with pytest.raises(KubeApiError, match="403"):
        await api.create(RAYJOB)


def test_kopf_keeps_a_digest_of_the_spec_not_a_copy():
    """A copy of a 200 KiB spec beside kubectl's own overflowed the 256 KiB annotation limit."""
    import kopf

    from prism_operator.settings import DigestDiffBaseStorage

    storage = DigestDiffBaseStorage(prefix="prism.dev", key="last-handled-digest")
    raw = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
           "metadata": {"name": "j", "namespace": "n", "annotations": {}}, "spec": {"blob": "x" * 200_000}}
    body = kopf.Body(raw)
    assert storage.fetch(body=body) is None  # never handled: a creation
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    stored = patch["metadata"]["annotations"]["prism.dev/last-handled-digest"]
    assert len(stored) < 200
    handled = kopf.Body({**raw, "metadata": {**raw["metadata"], "annotations": {
        "prism.dev/last-handled-digest": stored}}})
    assert storage.fetch(body=handled) == storage.build(body=handled)  # unchanged: no diff
    changed = kopf.Body({**raw, "metadata": handled.metadata, "spec": {"blob": "y"}})
    assert storage.fetch(body=changed) == {}  # changed: reads as all new
