"""A SearchService's status and the actions to reach it, from what was observed (pure).

Phases (prism_api.search_service.ServicePhase):

    Pending    no RayService yet (it is being created)
    Deploying  the RayService exists; its application is not (yet, or no longer) serving this spec:
               KubeRay starting the cluster, Serve deploying, an upgrade to a changed spec under way
    Ready      KubeRay's Ready condition is True (serve endpoints > 0), the application is RUNNING, every
               deployment is HEALTHY (or scaling: UPSCALING/DOWNSCALING), and the RayService runs this
               generation's spec
    Failed     an invalid spec (reason InvalidSpec; no RayService is created or changed), KubeRay refused
               the RayService (ValidationFailed, InitializingTimeout), or the application failed to
               deploy (DeployFailed, with Serve's message: a model version mismatch names both versions)

Nothing is sticky: every phase follows from the observation, so a RayService that recovers (KubeRay
resubmits the application) makes the service Ready again.

What the running application serves (its models, from GET /info) and its running replicas (the
dashboard's Serve API) are read only while Ready and only when not known for the current state
(`wants_probe`): once per generation, again after the deployments' statuses change (scaling) or the
service was not Ready in between.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from prism_api.search_service import (
    SERVE_APP_NAME,
    SearchService,
    SearchServiceStatus,
    ServedModel,
    ServicePhase,
)

from ..builders.rayservice import SOURCE_GENERATION_ANNOTATION, endpoint
from ..status.conditions import Cond, merge_conditions
from ..status.model import Event

# Serve deployment statuses of a deployment that serves (KubeRay copies Serve's: HEALTHY, UPDATING,
# UNHEALTHY; Ray 2.60 also reports UPSCALING and DOWNSCALING while autoscaling).
SERVING_DEPLOYMENT_STATUSES = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})
# KubeRay's Ready-condition reasons after which it does nothing more with this spec.
KUBERAY_FAILURES = {"ValidationFailed": "RayServiceInvalid", "InitializingTimeout": "InitializingTimeout"}
MESSAGE_LIMIT = 4000
# A read of the running application that failed is tried again after this long (not at every tick).
PROBE_RETRY_SECONDS = 60


@dataclass(frozen=True)
class CreateRayService:
    pass


@dataclass(frozen=True)
class PatchRayService:
    """Give the RayService this generation's spec (KubeRay then upgrades it)."""
    generation: int | None


@dataclass(frozen=True)
class Probe:
    """What was read from the running application, and in which state (probe_key) it was read."""
    key: str
    at: datetime
    models: tuple[ServedModel, ...] | None = None  # None: /info not read
    replicas: int | None = None                    # None: the dashboard not read
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.models is not None and self.replicas is not None


@dataclass(frozen=True)
class SearchObserved:
    service: SearchService | None   # None: the spec is invalid
    old: SearchServiceStatus
    now: datetime
    name: str
    namespace: str
    generation: int | None = None
    spec_errors: tuple[str, ...] = ()
    rayservice: dict | None = None   # the RayService labelled with this SearchService's name, if any
    uid: str | None = None           # this SearchService's uid
    patched: int | None = None       # the generation whose patch this process sent last
    conflict: str = ""               # a RayService of that name exists and is not this service's
    created: bool = False            # this process created the RayService a moment ago (the watch lags)
    probe: Probe | None = None       # the last read of the running application (this process)


@dataclass(frozen=True)
class SearchDecision:
    status: SearchServiceStatus
    actions: tuple[CreateRayService | PatchRayService, ...] = ()
    events: tuple[Event, ...] = field(default_factory=tuple)
    # Ready, and the application's models or replicas are not known in this state: read them (key).
    wants_probe: str = ""


@dataclass
class _Draft:
    phase: ServicePhase
    reason: str
    message: str = ""
    actions: list = field(default_factory=list)


def _status(obj: dict | None) -> dict:
    return (obj or {}).get("status") or {}


def _condition(rayservice: dict | None, kind: str) -> dict:
    return next((c for c in _status(rayservice).get("conditions") or [] if c.get("type") == kind), {})


def _newest(rayservice: dict | None) -> dict:
    """The service status of the cluster KubeRay is moving to: the pending one during an upgrade."""
    status = _status(rayservice)
    pending = status.get("pendingServiceStatus") or {}
    return pending if pending.get("rayClusterName") else (status.get("activeServiceStatus") or {})


def application(rayservice: dict | None, pending_first: bool = True) -> dict | None:
    serving = _newest(rayservice) if pending_first else (_status(rayservice).get("activeServiceStatus") or {})
    app = (serving.get("applicationStatuses") or {}).get(SERVE_APP_NAME)
    return app if isinstance(app, dict) else None


def _deployments(app: dict | None) -> dict[str, dict]:
    return {k: v for k, v in ((app or {}).get("serveDeploymentStatuses") or {}).items() if isinstance(v, dict)}


def probe_key(obs: SearchObserved) -> str:
    """The state the application's reading belongs to: this generation, the active cluster and the
    deployments' statuses (a scale-up or a replaced cluster changes it)."""
    app = application(obs.rayservice, pending_first=False)
    state = {
        "generation": obs.generation,
        "cluster": (_status(obs.rayservice).get("activeServiceStatus") or {}).get("rayClusterName", ""),
        "deployments": sorted((k, v.get("status", "")) for k, v in _deployments(app).items()),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + " ..."


def _owned(obs: SearchObserved) -> bool:
    owners = ((obs.rayservice or {}).get("metadata") or {}).get("ownerReferences") or []
    return not obs.uid or any(o.get("uid") == obs.uid for o in owners)


def _current(obs: SearchObserved) -> bool:
    """The RayService has this generation's spec and KubeRay has seen it."""
    meta = (obs.rayservice or {}).get("metadata") or {}
    built = (meta.get("annotations") or {}).get(SOURCE_GENERATION_ANNOTATION)
    seen = _status(obs.rayservice).get("observedGeneration")
    return built == str(obs.generation or 0) and (seen is None or seen == meta.get("generation"))


def _failed_deployments(app: dict | None) -> str:
    bad = [f"{name}: {d.get('status', '')}" + (f" ({d['message']})" if d.get("message") else "")
           for name, d in sorted(_deployments(app).items()) if d.get("status") not in SERVING_DEPLOYMENT_STATUSES]
    return "; ".join(bad)


def derive(obs: SearchObserved) -> SearchDecision:
    draft = _invalid(obs) if obs.service is None else _live(obs)
    return _finish(obs, draft)


def _invalid(obs: SearchObserved) -> _Draft:
    message = "; ".join(obs.spec_errors)
    if obs.rayservice is not None:
        message += f" (RayService {obs.name} keeps its previous spec)"
    return _Draft(ServicePhase.FAILED, "InvalidSpec", _clip(message))


def _live(obs: SearchObserved) -> _Draft:
    rs, name = obs.rayservice, obs.name
    if obs.conflict:
        return _Draft(ServicePhase.FAILED, "NameConflict", obs.conflict)
    if rs is None:
        return _Draft(ServicePhase.PENDING, "Creating", f"creating RayService {name}",
                      [] if obs.created else [CreateRayService()])
    if not _owned(obs):
        return _Draft(ServicePhase.PENDING, "WaitingForOldRayService",
                      f"RayService {name} belongs to an earlier SearchService of this name; waiting for the "
                      "garbage collector to delete it")
    if ((rs.get("metadata") or {}).get("deletionTimestamp")):
        return _Draft(ServicePhase.PENDING, "RayServiceDeleting", f"RayService {name} is being deleted")
    meta = rs.get("metadata") or {}
    actions: list = []
    if ((meta.get("annotations") or {}).get(SOURCE_GENERATION_ANNOTATION) != str(obs.generation or 0)
            and obs.patched != obs.generation):
        actions.append(PatchRayService(obs.generation))

    ready = _condition(rs, "Ready")
    if ready.get("status") == "False" and ready.get("reason") in KUBERAY_FAILURES and not actions:
        return _Draft(ServicePhase.FAILED, KUBERAY_FAILURES[ready["reason"]],
                      _clip(f"KubeRay: {ready.get('message') or ready['reason']}"))
    app = application(rs)
    app_status = (app or {}).get("status", "")
    if app_status == "DEPLOY_FAILED" and _current(obs) and not actions:
        detail = "; ".join(x for x in ((app or {}).get("message", ""), _failed_deployments(app)) if x)
        serving = (application(rs, pending_first=False) or {}).get("status") == "RUNNING" and app is not (
            application(rs, pending_first=False))
        return _Draft(ServicePhase.FAILED, "DeployFailed",
                      _clip("the Serve application failed to deploy" + (f": {detail}" if detail else "")
                            + (" (the previous cluster keeps serving the previous spec)" if serving else "")))

    draft = _Draft(ServicePhase.DEPLOYING, "Deploying", actions=actions)
    upgrading = _condition(rs, "UpgradeInProgress").get("status") == "True"
    if actions or not _current(obs):
        draft.reason = "Updating"
        draft.message = f"RayService {name} is being given generation {obs.generation}'s spec"
    elif upgrading:
        draft.reason = "Upgrading"
        draft.message = (f"KubeRay is starting a new cluster for RayService {name}; the previous one serves "
                         "until it is ready")
    elif app is None:
        cluster = (_newest(rs).get("rayClusterStatus") or {}).get("state") or "starting"
        draft.reason = "ClusterStarting"
        draft.message = f"RayService {name}: Ray cluster {cluster}; the Serve application is not submitted yet"
    elif app_status != "RUNNING":
        draft.reason = "Unhealthy" if app_status == "UNHEALTHY" else "Deploying"
        bad = _failed_deployments(app)
        draft.message = f"Serve application {SERVE_APP_NAME} is {app_status or 'starting'}" + (
            f": {bad}" if bad else "") + (f" ({app['message']})" if app.get("message") else "")
    elif _failed_deployments(app):
        draft.reason = "DeploymentsNotHealthy"
        draft.message = f"Serve application {SERVE_APP_NAME} is RUNNING; not healthy: {_failed_deployments(app)}"
    elif ready.get("status") != "True":
        draft.reason = "NoServeEndpoints"
        draft.message = f"Serve application {SERVE_APP_NAME} is RUNNING; KubeRay: " + (
            ready.get("message") or "waiting for serve endpoints")
    else:
        draft.phase, draft.reason = ServicePhase.READY, "Ready"
        draft.message = f"serving collection {obs.service.spec.collection} at {endpoint(name, obs.namespace)}"
    draft.message = _clip(draft.message)
    return draft


def _models(obs: SearchObserved, draft: _Draft, key: str) -> list[ServedModel]:
    probe = obs.probe
    if draft.phase == ServicePhase.READY and probe is not None and probe.key == key and probe.models is not None:
        return list(probe.models)
    return list(obs.old.models)


def _replicas(obs: SearchObserved, draft: _Draft, key: str) -> int:
    probe = obs.probe
    if draft.phase == ServicePhase.READY and probe is not None and probe.key == key and probe.replicas is not None:
        return probe.replicas
    # Not read: the deployments KubeRay reports serving, each with at least one replica (a lower bound).
    app = application(obs.rayservice, pending_first=False)
    if app is None or app.get("status") != "RUNNING":
        return 0
    return sum(1 for d in _deployments(app).values() if d.get("status") in SERVING_DEPLOYMENT_STATUSES)


def _finish(obs: SearchObserved, draft: _Draft) -> SearchDecision:
    old, phase = obs.old, draft.phase
    live = phase in (ServicePhase.PENDING, ServicePhase.DEPLOYING)
    wanted = {
        "Ready": Cond("True" if phase == ServicePhase.READY else "False", draft.reason, draft.message),
        "Progressing": Cond("True" if live else "False", draft.reason, draft.message if live else ""),
        "Failed": Cond("True" if phase == ServicePhase.FAILED else "False",
                       draft.reason if phase == ServicePhase.FAILED else phase.value,
                       draft.message if phase == ServicePhase.FAILED else ""),
    }
    key = probe_key(obs)
    exists = obs.rayservice is not None and obs.service is not None
    status = SearchServiceStatus(
        phase=phase,
        reason=draft.reason,
        message=draft.message,
        observed_generation=obs.generation,
        conditions=merge_conditions(old.conditions, wanted, obs.now, obs.generation),
        ray_service=obs.name if exists else old.ray_service,
        ray_cluster=_active_cluster(obs.rayservice) or (old.ray_cluster if exists else None),
        endpoint=endpoint(obs.name, obs.namespace) if exists else old.endpoint,
        ready_replicas=_replicas(obs, draft, key),
        models=_models(obs, draft, key),
    )
    events: list[Event] = []
    if phase != old.phase or (phase == ServicePhase.FAILED and (draft.reason, draft.message) != (old.reason,
                                                                                               old.message)):
        kind = "Warning" if phase == ServicePhase.FAILED else "Normal"
        events.append(Event(kind, draft.reason or phase.value, f"{phase.value}: {draft.message}"))
    probe = obs.probe
    due = (probe is None or probe.key != key
           or (not probe.complete and (obs.now - probe.at).total_seconds() >= PROBE_RETRY_SECONDS))
    wants = key if phase == ServicePhase.READY and due else ""
    return SearchDecision(status, tuple(draft.actions), tuple(events), wants_probe=wants)


def _active_cluster(rayservice: dict | None) -> str | None:
    """The RayCluster serving now: KubeRay's activeServiceStatus.rayClusterName."""
    status = (rayservice or {}).get("status") or {}
    name = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    return name if isinstance(name, str) and name else None
