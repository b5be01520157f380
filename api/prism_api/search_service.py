"""The online side's contracts: the SearchService kind (prism.dev/v1alpha1, short name `xs`), the
arguments of the Ray Serve application it runs, and that application's HTTP API.

A SearchService serves one collection an ExtractionJob filled: a Ray Serve deployment per embedding
extractor recorded in the collection's metadata (`<collection>__prism_files`), each loaded at exactly
the recorded model version (the application refuses to start on a mismatch, naming both versions), and
an ingress with `POST /embed`, `POST /search`, `GET /info` and an OpenAPI document (`/openapi.json`).
The operator reconciles it into a KubeRay RayService whose `serveConfigV2` runs SERVE_IMPORT_PATH with
ServeAppArgs; `prism serve --collection NAME` runs the same application on local Ray over the embedded
store. Serve replicas never ask for the `batch` resource (conventions.BATCH_RESOURCE); batch stages
always do, so a batch job sharing the cluster cannot take the replicas' CPUs or GPUs.

Every model here crosses a process boundary (API server, operator, Serve replicas, HTTP clients) and
has a round-trip test in tests/api/.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .conventions import FILES_COLLECTION_SUFFIX, PRISM_MARK
from .fields import PrismModel, Quantity, check_object_name, coerce_quantity, quantity_value
from .job import ObjectMeta
from .job_spec import COLLECTION_NAME, EXTRACTOR_NAME, HeadGroup, SecretKeyRef, WorkerGroup
from .job_status import Condition

SEARCH_KIND = "SearchService"
SEARCH_PLURAL = "searchservices"
SEARCH_SHORT_NAMES = ["xs"]
# KubeRay names the RayService's RayCluster `<name>-<5 random>` and its Services `<name>-head-svc` and
# `<name>-serve-svc`, within its 47-character limit on cluster names (child_names.KUBERAY_NAME_LIMIT).
MAX_SEARCH_NAME_LENGTH = 40

# The Serve application: its import path (a builder taking ServeAppArgs as a dict), its name in the
# RayService, and its HTTP port and routes.
SERVE_IMPORT_PATH = "prism_pipeline.serve.app:build"
SERVE_APP_NAME = "search"
SERVE_HTTP_PORT = 8000
ROUTE_EMBED = "/embed"
ROUTE_SEARCH = "/search"
ROUTE_INFO = "/info"
ROUTE_OPENAPI = "/openapi.json"
# The label a RayService's RayCluster carries (KubeRay sets `ray.io/originated-from-crd: RayService`);
# an ExtractionJob with cluster.existing naming such a cluster must acknowledge that KubeRay replaces
# the cluster (and kills its batch jobs) when the RayService's cluster spec changes.
SHARED_WITH_SERVICE_ANNOTATION = "prism.dev/run-on-rayservice-cluster"

# Bounds of one HTTP request.
MAX_QUERY_CHARS = 8192
MAX_IMAGE_BYTES = 16 * 2**20          # decoded; base64 on the wire is 4/3 of it
MAX_LIMIT = 100


class ReplicaBounds(PrismModel):
    """Serve autoscaling bounds of one deployment (autoscaling_config min_replicas/max_replicas)."""

    min: int = Field(default=1, ge=1, le=1024, description="Replicas kept running (at least 1).")
    max: int = Field(default=1, ge=1, le=1024, description="Replicas Serve may scale up to (>= min).")

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise PydanticCustomError("replica_bounds", "min ({min}) must be <= max ({max})",
                                      {"min": self.min, "max": self.max})
        return self


class ServeResources(PrismModel):
    """What one replica of a deployment needs (ray_actor_options). Never the `batch` resource."""

    cpu: float = Field(default=1, gt=0, le=256, description="CPUs per replica.")
    gpu: float = Field(default=0, ge=0, le=16, description="GPUs per replica (fractions share a GPU).")
    memory: Quantity | None = Field(default=None, description="Memory per replica, e.g. 4Gi (a Ray scheduling hint).")

    _coerce = field_validator("memory", mode="before")(classmethod(lambda cls, v: coerce_quantity(v)))


class ServeDeployment(PrismModel):
    """How one embedding extractor of the collection is served."""

    extractor: str = Field(pattern=EXTRACTOR_NAME, max_length=63,
                           description="The extractor's name, as recorded in the collection (its vector's name).")
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds, description=ReplicaBounds.__doc__)
    target_ongoing_requests: float = Field(default=2, gt=0, le=1000,
                                           description="Autoscaling target of in-flight requests per replica.")
    max_ongoing_requests: int = Field(default=16, ge=1, le=10_000,
                                      description="In-flight requests one replica accepts before Serve queues.")
    max_batch_size: int = Field(default=16, ge=1, le=1024,
                                description="Queries embedded together in one model call (@serve.batch).")
    batch_wait_timeout_ms: int = Field(default=5, ge=0, le=10_000,
                                       description="How long a batch waits to fill before it runs.")
    resources: ServeResources = Field(default_factory=ServeResources, description=ServeResources.__doc__)

    def serve_options(self) -> dict[str, Any]:
        """The deployment's options in Ray Serve's own names, as the application sets them and as the
        RayService's serveConfigV2 `deployments[]` shows them: named after its extractor, autoscaling
        bounds (min = max: a fixed count), the in-flight cap, the replica's resources (never the `batch`
        resource) and the batching knobs as user_config (Serve changes them in place, without a restart)."""
        res = self.resources
        actor: dict[str, Any] = {"num_cpus": res.cpu, "num_gpus": res.gpu}
        if res.memory is not None:
            actor["memory"] = int(quantity_value(res.memory))
        return {
            "name": self.extractor,
            "autoscaling_config": {"min_replicas": self.replicas.min, "max_replicas": self.replicas.max,
                                   "target_ongoing_requests": self.target_ongoing_requests},
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": actor,
            "user_config": {"max_batch_size": self.max_batch_size,
                            "batch_wait_timeout_s": self.batch_wait_timeout_ms / 1000},
        }

    @model_validator(mode="after")
    def _batch_fits(self) -> ServeDeployment:
        if self.max_batch_size > self.max_ongoing_requests:
            raise PydanticCustomError(
                "batch_over_requests", "maxBatchSize ({batch}) must be <= maxOngoingRequests ({ongoing}): a replica "
                "never holds more requests than maxOngoingRequests, so a larger batch never fills and every batch "
                "waits batchWaitTimeoutMs", {"batch": self.max_batch_size, "ongoing": self.max_ongoing_requests})
        return self


def _deployments_unique(deployments: list[ServeDeployment]) -> list[ServeDeployment]:
    names = [d.extractor for d in deployments]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PydanticCustomError("duplicate_deployment", "extractor {names} listed more than once",
                                  {"names": ", ".join(repr(n) for n in twice)})
    return deployments


def _collection_not_prism(collection: str) -> str:
    if PRISM_MARK in collection:
        raise PydanticCustomError(
            "reserved_collection", "must not contain '{mark}': <collection>{suffix} is Prism's own record",
            {"mark": PRISM_MARK, "suffix": FILES_COLLECTION_SUFFIX})
    return collection


class ServeAppArgs(PrismModel):
    """The Serve application's arguments: the RayService's `serveConfigV2` passes them as `args`,
    `prism serve` as a dict. Exactly one of qdrantUrl (a server) and stateDir (the embedded store)."""

    collection: str = Field(pattern=COLLECTION_NAME, description="The collection to serve.")
    qdrant_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=512,
                                   description="Qdrant server URL (API key from the QDRANT_API_KEY env var).")
    state_dir: str | None = Field(default=None, max_length=4096,
                                  description="The embedded store's state dir (local runs), as `prism run` used.")
    timeout_seconds: float = Field(default=30, gt=0, le=600, description="Timeout of one Qdrant request.")
    deployments: list[ServeDeployment] = Field(
        default_factory=list, max_length=64,
        description="Per extractor settings; an embedding extractor not listed is served with the defaults.")

    _collection = field_validator("collection")(classmethod(lambda cls, v: _collection_not_prism(v)))
    _unique = field_validator("deployments")(classmethod(lambda cls, v: _deployments_unique(v)))

    @model_validator(mode="after")
    def _one_store(self) -> ServeAppArgs:
        if (self.qdrant_url is None) == (self.state_dir is None):
            raise PydanticCustomError("one_store", "give exactly one of qdrantUrl (a Qdrant server) and "
                                      "stateDir (the embedded store)", {})
        return self

    def deployment(self, extractor: str) -> ServeDeployment:
        """The settings of `extractor`'s deployment: as listed, else the defaults."""
        return next((d for d in self.deployments if d.extractor == extractor), ServeDeployment(extractor=extractor))


# ---- The SearchService kind -------------------------------------------------------------------------

class SearchQdrant(PrismModel):
    """The Qdrant server holding the collection (the one the ExtractionJob wrote)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512, description="Qdrant server URL.")
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the Qdrant API key (exposed to the replicas as QDRANT_API_KEY).")
    timeout_seconds: float = Field(default=30, gt=0, le=600, description="Timeout of one Qdrant request.")

    @field_validator("url")
    @classmethod
    def _no_inline_key(cls, url: str) -> str:
        if "api_key=" in url.lower() or "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise PydanticCustomError("inline_secret", "must not embed credentials; put the API key in a Secret "
                                      "and reference it with spec.qdrant.apiKeySecretRef", {})
        return url


class ServeCluster(PrismModel):
    """The RayService's Ray cluster: a zero-CPU head and worker groups for the replicas."""

    ray_version: str = Field(default="2.60.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$",
                             description="Ray version of the image.")
    image: str = Field(default="ghcr.io/prism-extract/worker:0.1.0", min_length=1, max_length=512,
                       description="Worker image (Ray Serve, torch and the prism pipeline).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of Ray pods.")
    head: HeadGroup = Field(default_factory=HeadGroup, description=HeadGroup.__doc__)
    worker_groups: list[WorkerGroup] = Field(
        default_factory=lambda: [WorkerGroup(name="serve", cpu="2", memory="8Gi", minReplicas=1, maxReplicas=2)],
        min_length=1, max_length=16,
        description="Worker groups for the replicas; GPU deployments need a group with gpus > 0. They never "
        "advertise the batch resource, so no batch stage runs on them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    batch_worker_groups: list[WorkerGroup] = Field(
        default_factory=list, max_length=16,
        description="Worker groups for batch jobs on this cluster (ExtractionJobs with cluster.existing, e.g. "
        "with Serve-backed extractors): each advertises {batch: batchResource}, which every batch stage asks "
        "for, so batch stages run only on these. Empty: no batch job can run here. Names must differ from "
        "workerGroups'.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    batch_resource: int = Field(
        default=1, ge=1, le=1024,
        description="The batch resource each batch worker advertises (as an ExtractionJob's cluster.batchResource).",
    )


def _service_rule_errors(spec: SearchServiceSpec) -> list[tuple[str, str]]:
    """The cross-field rules of a SearchService spec, as (path under spec, message): worker groups as an
    ExtractionJob's (rules._cluster_rules), and a GPU deployment needs a worker group with that many GPUs."""
    errors: list[tuple[str, str]] = []
    groups = spec.cluster.worker_groups
    seen: set[str] = set()
    listed = [("workerGroups", i, g) for i, g in enumerate(groups)]
    listed += [("batchWorkerGroups", i, g) for i, g in enumerate(spec.cluster.batch_worker_groups)]
    for field, i, g in listed:  # one RayCluster: every group name once, over both lists
        where = f"cluster.{field}[{i}]"
        if g.name in seen:
            errors.append((f"{where}.name", f"must be unique over workerGroups and batchWorkerGroups (got {g.name!r})"))
        seen.add(g.name)
        if g.min_replicas > g.max_replicas:
            errors.append((f"{where}.minReplicas", f"must be <= maxReplicas (got {g.min_replicas} > {g.max_replicas})"))
    most_gpus = max((g.gpus for g in groups), default=0)
    for i, d in enumerate(spec.deployments):
        gpu = d.resources.gpu
        if gpu > 0 and most_gpus == 0:
            errors.append((f"deployments[{i}].resources.gpu",
                           f"asks for {gpu:g} GPU but no spec.cluster.workerGroups entry has gpus > 0; "
                           "add a GPU worker group or set resources.gpu: 0"))
        elif gpu > most_gpus:
            errors.append((f"deployments[{i}].resources.gpu",
                           f"asks for {gpu:g} GPUs per replica but the largest GPU worker group has {most_gpus}"))
    return errors


class SearchServiceSpec(PrismModel):
    """Which collection to serve, from which Qdrant, with how many replicas of each model."""

    collection: str = Field(pattern=COLLECTION_NAME, description="The collection an ExtractionJob wrote.")
    qdrant: SearchQdrant = Field(description=SearchQdrant.__doc__)
    deployments: list[ServeDeployment] = Field(
        default_factory=list, max_length=64,
        description="Per extractor settings (replicas, resources, batching); an embedding extractor of the "
        "collection not listed is served with the defaults.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["extractor"]},
    )
    cluster: ServeCluster = Field(default_factory=ServeCluster, description=ServeCluster.__doc__)

    _collection = field_validator("collection")(classmethod(lambda cls, v: _collection_not_prism(v)))
    _unique = field_validator("deployments")(classmethod(lambda cls, v: _deployments_unique(v)))

    @model_validator(mode="after")
    def _cross_field_rules(self) -> SearchServiceSpec:
        errors = _service_rule_errors(self)
        if errors:  # reported per field, as an ExtractionJob spec's rules are (errors.format_validation_error)
            raise PydanticCustomError("prism_rules", "{summary}", {
                "summary": "; ".join(f"{p}: {m}" for p, m in errors), "errors": errors})
        return self

    def app_args(self) -> ServeAppArgs:
        """The Serve application's arguments for this spec."""
        return ServeAppArgs(collection=self.collection, qdrant_url=self.qdrant.url,
                            timeout_seconds=self.qdrant.timeout_seconds, deployments=self.deployments)


class ServicePhase(StrEnum):
    PENDING = "Pending"      # accepted, no RayService yet
    DEPLOYING = "Deploying"  # RayService created; the application is not running yet
    READY = "Ready"          # every deployment healthy and the endpoint answers
    FAILED = "Failed"        # invalid spec, or the application failed to deploy (e.g. a model version mismatch)


SERVICE_CONDITION_TYPES = ("Ready", "Progressing", "Failed")


class ServedModel(PrismModel):
    """One deployment as served: its extractor and the model version it loaded."""

    extractor: str = Field(max_length=63, description="The extractor (vector) name.")
    kind: str = Field(default="", max_length=256, description="The extractor's kind.")
    model: str | None = Field(default=None, max_length=1024, description="The model URI, where recorded.")
    version: str = Field(max_length=1024, description="The model version, equal to the collection's record.")


class SearchServiceStatus(PrismModel):
    """Observed state, written by the operator only."""

    phase: ServicePhase = Field(default=ServicePhase.PENDING, description="Pending, Deploying, Ready or Failed.")
    reason: str = Field(default="", max_length=128, description="Why the service is in this phase.")
    message: str = Field(default="", max_length=32_768, description="Human-readable detail.")
    observed_generation: int | None = Field(default=None, ge=0, description="metadata.generation this status reflects.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16,
                                        description="kstatus conditions: " + ", ".join(SERVICE_CONDITION_TYPES) + ".")
    ray_service: str | None = Field(default=None, max_length=63, description="The RayService.")
    ray_cluster: str | None = Field(
        default=None, max_length=63,
        description="The RayCluster serving now (KubeRay's `<name>-<5 random>`, renamed each time it replaces "
        "the cluster): what an ExtractionJob's cluster.existing names to run beside the service.")
    endpoint: str | None = Field(default=None, max_length=512,
                                 description="The HTTP endpoint in the cluster (POST /search, POST /embed).")
    ready_replicas: int = Field(default=0, ge=0, description="Serve replicas running, over all deployments.")
    models: list[ServedModel] = Field(default_factory=list, max_length=64, description="The model versions served.")


class SearchServiceMeta(ObjectMeta):
    @field_validator("name")
    @classmethod
    def _child_safe_name(cls, name: str) -> str:  # replaces ObjectMeta's
        return check_object_name(name, MAX_SEARCH_NAME_LENGTH, "KubeRay's names for the RayService's cluster "
                                 "and Services stay within its limits")


class SearchService(PrismModel):
    """A SearchService manifest."""

    model_config = {**PrismModel.model_config, "extra": "forbid"}

    api_version: Literal["prism.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["SearchService"]
    metadata: SearchServiceMeta
    spec: SearchServiceSpec
    status: SearchServiceStatus | None = None


def parse_search_service(obj: Any) -> SearchService:
    """Validate a whole SearchService manifest; raises SpecError listing every problem."""
    from .errors import validate_manifest

    return validate_manifest(SearchService, obj, SEARCH_KIND)


# ---- The HTTP API (the Serve application's ingress) ------------------------------------------------

Modality = Literal["image", "audio", "text", "video", "document"]


class TimeRange(PrismModel):
    """Seconds into the file (an item's `timestamp`): frames, audio chunks."""

    gte: float | None = Field(default=None, ge=0, description="At or after this second.")
    lte: float | None = Field(default=None, ge=0, description="At or before this second.")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.gte is None and self.lte is None:
            raise PydanticCustomError("empty_range", "give gte, lte or both", {})
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise PydanticCustomError("range_order", "gte ({gte}) must be <= lte ({lte})",
                                      {"gte": self.gte, "lte": self.lte})
        return self


class SearchFilter(PrismModel):
    """Payload conditions every hit meets (all of them)."""

    modality: list[Modality] | None = Field(default=None, min_length=1, max_length=5,
                                            description="The item's modality is one of these.")
    uri_prefix: str | None = Field(default=None, min_length=1, max_length=2048,
                                   description="The file's uri starts with this.")
    time_range: TimeRange | None = Field(default=None, description=TimeRange.__doc__)
    page: int | None = Field(default=None, ge=0, description="A document item on this page.")


class _Query(PrismModel):
    text: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS, description="A text query.")
    image: str | None = Field(default=None, min_length=1, max_length=(MAX_IMAGE_BYTES * 4) // 3 + 4,
                              description="An image query: the file's bytes, base64 (JPEG, PNG, ...).")

    @model_validator(mode="after")
    def _one_query(self):
        if (self.text is None) == (self.image is None):
            raise PydanticCustomError("one_query", "give exactly one of text and image", {})
        return self


class EmbedRequest(_Query):
    """POST /embed: a text or an image; the vectors of every deployment that embeds it (or the one named)."""

    vector: str | None = Field(default=None, pattern=EXTRACTOR_NAME, description="Only this extractor's vector.")


class EmbedResponse(PrismModel):
    vectors: dict[str, list[float]] = Field(description="Extractor (vector) name -> the query's vector.")
    versions: dict[str, str] = Field(description="Extractor name -> the model version that embedded it.")


class SearchRequest(_Query):
    """POST /search: the best `limit` items for a text or image query, with optional filters."""

    vector: str | None = Field(default=None, pattern=EXTRACTOR_NAME,
                               description="Which extractor's vectors to search (default: the first that embeds "
                               "the query: text-embedding, then image-embedding).")
    limit: int = Field(default=10, ge=1, le=MAX_LIMIT, description=f"Hits to return (1-{MAX_LIMIT}).")
    filter: SearchFilter | None = Field(default=None, description=SearchFilter.__doc__)


class SearchHit(PrismModel):
    """One item found, with what a user needs to open it."""

    score: float
    uri: str = Field(description="The file.")
    key: str = Field(description="The item's key, <uri>#<position>.")
    item: str = Field(description="The position in the file (chunk=1, frame=48); '-' for a whole file.")
    modality: str | None = None
    timestamp: float | None = Field(default=None, description="Seconds into the file (frames, audio chunks).")
    at: float | None = Field(default=None, description="Where the query's words were spoken (transcripts), "
                             "else the timestamp.")
    page: int | None = Field(default=None, description="A document item's page.")
    text: str = Field(default="", description="The item's text (chunk text, transcript, OCR words).")
    excerpt: str = Field(default="", description="The best transcript segment, else the start of the text.")
    failed_extractors: list[str] = Field(default_factory=list, description="Extractors that failed on the item.")


class SearchResponse(PrismModel):
    vector: str = Field(description="The extractor whose vectors were searched.")
    version: str = Field(description="The model version that embedded the query (the collection's).")
    hits: list[SearchHit]


class ServiceInfo(PrismModel):
    """GET /info: what this application serves."""

    collection: str
    models: list[ServedModel]


# ---- `prism serve`'s record of a running local service ----------------------------------------------

LOCAL_SERVICES_DIR = "serve"  # under the state dir: <state dir>/serve/<collection>.json


class LocalServiceRecord(PrismModel):
    """A `prism serve` running on this machine, written to <state dir>/serve/<collection>.json while it
    serves and removed when it stops; `prism search` sends its queries there instead of opening the
    embedded store (which the service holds locked). A record whose pid is gone is stale."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512, description="The service's base URL.")
    pid: int = Field(ge=1, description="The `prism serve` process.")
    collection: str = Field(pattern=COLLECTION_NAME, description="The collection served.")
    app: str = Field(default=SERVE_APP_NAME, min_length=1, max_length=128, description="The Serve application's name.")
    qdrant_url: str | None = Field(default=None, max_length=512,
                                   description="The Qdrant server it reads, None for the embedded store.")
    ray_address: str = Field(default="", max_length=512,
                             description="The Ray cluster it runs on (a `prism run` with RAY_ADDRESS set to it "
                             "runs its batch job beside the service).")
    started_at: str = Field(max_length=64, description="When it started serving (UTC, ISO 8601).")


def local_service_path(state_dir: str | PurePath, collection: str) -> PurePath:
    """Where `prism serve` records a running service for `collection` under `state_dir`."""
    return PurePath(state_dir) / LOCAL_SERVICES_DIR / f"{collection}.json"


class ErrorBody(PrismModel):
    """Every 4xx/5xx body: the field at fault, if any, and what to do."""

    error: str
    field: str | None = None


__all__ = [
    "LOCAL_SERVICES_DIR", "MAX_SEARCH_NAME_LENGTH", "ROUTE_EMBED", "ROUTE_INFO", "ROUTE_OPENAPI",
    "ROUTE_SEARCH", "SEARCH_KIND", "SEARCH_PLURAL", "SEARCH_SHORT_NAMES", "SERVE_APP_NAME", "SERVE_HTTP_PORT",
    "SERVE_IMPORT_PATH", "SHARED_WITH_SERVICE_ANNOTATION", "EmbedRequest", "EmbedResponse", "ErrorBody",
    "LocalServiceRecord", "ReplicaBounds", "SearchFilter", "SearchHit", "SearchQdrant", "SearchRequest",
    "SearchResponse", "SearchService", "SearchServiceSpec", "SearchServiceStatus", "ServeAppArgs",
    "ServeCluster", "ServeDeployment", "ServeResources", "ServedModel", "ServiceInfo", "ServicePhase",
    "TimeRange", "local_service_path", "parse_search_service",
]
