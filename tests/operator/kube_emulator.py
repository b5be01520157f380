"""kmock's KubernetesEmulator with the API-server behaviour kopf relies on (docs/platform-facts.md, kmock section).

Added here: uid / resourceVersion / generation / creationTimestamp stamping, `generateName`,
JSON-patch `test` failures answered with 422 (as the API server does), and list/watch with a
resourceVersion so that kopf's watch resumes from its listing instead of replaying stale objects.
Mutations are serialised, as an API server's storage would.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import aiobus, enums, k8s, rendering

RAY = "ray.io/v1"
PRISM = "prism.dev/v1alpha1"


@attrs.mutable(weakref_slot=True)
class JournalBus(aiobus.Bus):
    """A watch bus that also keeps every event, so a watch can resume at a resourceVersion."""

    journal: list = attrs.field(init=False, factory=list)

    async def put(self, *items: Any) -> None:
        self.journal.extend(items)
        await super().put(*items)


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(JournalBus)

    def _stored(self, request: rendering.Request) -> dict | None:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            return copy.deepcopy(dict(self._objects[key].raw))
        return None

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is None or request.action not in (enums.action.CREATE, enums.action.UPDATE,
                                                              enums.action.DELETE):
            return await super()._handle(request)
        async with self._write_lock:
            try:
                request = self._stamp(request)
            except k8s.KubernetesError as exc:
                return await self._render_error(exc)
            return await super()._handle(request)

    def _stamp(self, request: rendering.Request) -> rendering.Request:
        version = str(next(self._versions))
        if request.action == enums.action.CREATE:
            data = copy.deepcopy(request.data)
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{version}"
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = version
            meta["generation"] = 1
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return _with_data(request, data)
        if request.action == enums.action.UPDATE:
            current = self._stored(request)
            if current is None:
                return request  # the emulator answers 404
            patch = request.data
            if isinstance(patch, list):
                try:
                    after = jsonpatch.apply_patch(current, patch, in_place=False)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise k8s.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
            else:
                from kmock._internal.dicts import merge_patch_dict

                after = merge_patch_dict(current, patch)
            stamp = {"resourceVersion": version}
            if after.get("spec") != current.get("spec"):
                stamp["generation"] = int(current.get("metadata", {}).get("generation") or 1) + 1
            if isinstance(patch, list):
                ops = [{"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items()]
                return _with_data(request, [*patch, *ops])
            patch = copy.deepcopy(patch)
            patch.setdefault("metadata", {}).update(stamp)
            return _with_data(request, patch)
        return request

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if request.resource not in self._get_resources():
            raise k8s.KubernetesResourceNotFoundError()
        # The items and the version are read under one lock: a watch resuming from this version
        # then sees exactly the changes the listing does not contain.
        async with self._lock:
            objs = self._KubernetesEmulator__get_objs(request, strict=False)
            version = str(len(self._buses[request.resource].journal))
            items = [copy.deepcopy(dict(obj.raw)) for obj in objs if not obj.deleted]
        return {"metadata": {"resourceVersion": version}, "items": items}

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        start = request.params.get("resourceVersion", "")
        if not start.isdigit():
            async for item in super()._serve_watch(request):
                yield item
            return
        yield b""
        bus = self._buses[request.resource]
        async with self._lock:
            backlog = list(bus.journal[int(start):])
            mark = await bus.mark()
        try:
            for event in backlog:
                if self._matches(request, event):
                    yield event
            async for event in mark:
                if self._matches(request, event):
                    yield event
        finally:
            await bus.unmark(mark)

    @staticmethod
    def _matches(request: rendering.Request, event: dict) -> bool:
        meta = event.get("object", {}).get("metadata", {})
        return ((request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name))


def declare_resources(emulator: ApiServerEmulator) -> None:
    """The API surface the operator and kopf use (discovery needs it before any object exists)."""
    verbs = {"list", "watch", "get", "patch", "create", "delete"}
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", verbs=verbs, namespaced=False)
    emulator.resources["v1/events"] = kmock.ResourceInfo(kind="Event", verbs=verbs, namespaced=True)
    emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", verbs=verbs, namespaced=True)
    emulator.resources[f"{PRISM}/extractionjobs"] = kmock.ResourceInfo(
        kind="ExtractionJob", singular="extractionjob", shortnames={"xj", "xjob"}, verbs=verbs,
        namespaced=True, subresources={"status"})
    emulator.resources[f"{PRISM}/searchservices"] = kmock.ResourceInfo(
        kind="SearchService", singular="searchservice", shortnames={"xs"}, verbs=verbs,
        namespaced=True, subresources={"status"})
    for plural, kind in (("rayclusters", "RayCluster"), ("rayjobs", "RayJob"), ("rayservices", "RayService")):
        emulator.resources[f"{RAY}/{plural}"] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), verbs=verbs, namespaced=True, subresources={"status"})


def _with_data(request: rendering.Request, data: Any) -> rendering.Request:
    # The same request object must flow on (kmock matches reactions and records requests by
    # identity), so the frozen attrs instance is updated in place.
    object.__setattr__(request, "data", data)
    return request
