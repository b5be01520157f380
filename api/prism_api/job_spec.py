"""The ExtractionJob spec (prism.dev/v1alpha1), as pydantic models.

Field descriptions become the CRD's descriptions, so `kubectl explain` shows them: keep them
written for a user. Cross-field rules live in `rules.py`; this module holds shapes and bounds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .conventions import FILES_COLLECTION_SUFFIX, PRISM_MARK
from .extractor_options import (
    OPTIONS_MAX_BYTES,
    OPTIONS_MAX_DEPTH,
    OPTIONS_MAX_KEYS,
    OptionsTooLarge,
    check_bounds,
)
from .fields import DNS1123_LABEL, PrismModel, Quantity, coerce_quantity
from .globs import glob_regex

BUILTIN_KINDS = (
    "text-embedding",
    "image-embedding",
    "transcription",
    "face-detection",
    "object-detection",
    "caption",
    "brand-safety",
    "ocr",
    "shot-boundary",
)
PLUGIN_KIND = r"^python:\s*[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
EXTRACTOR_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
COLLECTION_NAME = r"^[A-Za-z0-9_-]{1,255}$"
MODEL_URI = r"^(hf://[^\s]+|file://[^\s]+|s3://[^\s]+|gs://[^\s]+|package://[A-Za-z0-9_.-]+(/[^\s]*)?)$"


class SecretRef(PrismModel):
    """A Kubernetes Secret in the job's namespace. Its keys become environment variables in the
    Ray pods (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); the values are never copied."""

    name: str = Field(pattern=DNS1123_LABEL.replace("$", "") + r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                      max_length=253, description="Name of the Secret.")


class SecretKeyRef(PrismModel):
    """One key of a Kubernetes Secret in the job's namespace."""

    name: str = Field(pattern=DNS1123_LABEL.replace("$", "") + r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                      max_length=253, description="Name of the Secret.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key within the Secret.")


def _valid_glob(pattern: str) -> str:
    """A pattern the listing can compile: checked here, so neither `prism run` nor the operator starts
    a job whose listing would fail on it."""
    try:
        glob_regex(pattern)
    except re.error as err:
        hint = ("write a range low-high, e.g. [a-z]" if "bad character range" in err.msg
                else "globs know *, **, ?, [abc], [a-z] and [!abc]")
        raise PydanticCustomError("bad_glob", "{got} is not a valid glob ({why}); {hint}",
                                  {"got": repr(pattern), "why": err.msg, "hint": hint}) from None
    return pattern


Glob = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_valid_glob)]


class SourceSpec(PrismModel):
    """Where the files are. The driver lists them; Ray read tasks fetch and decode them."""

    uri: str = Field(
        min_length=1, max_length=2048,
        description="s3://bucket/prefix/, gs://bucket/prefix/, file:///mnt/volume/dir, or a local "
        "path (local runs only). Credentials never go here: use secretRef.",
    )
    include: list[Glob] = Field(
        default_factory=lambda: ["**/*"], max_length=64,
        description="Glob patterns (relative to uri) of files to process: '*' and '?' stay within a folder, '**' "
        "crosses folders, '[abc]' or '[a-z]' is a character class and '[!abc]' its negation.",
    )
    exclude: list[Glob] = Field(
        default_factory=list, max_length=64,
        description="Glob patterns of files to skip, applied after include.",
    )
    endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$", max_length=512,
        description="S3-compatible endpoint URL (MinIO, LocalStack, Ceph). Only for s3:// sources.",
    )
    region: str | None = Field(default=None, max_length=64, description="Object store region, if it needs one.")
    secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret whose keys become environment variables in the Ray pods "
        "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, ...).",
    )
    read_timeout_seconds: float = Field(
        default=120, gt=0, le=3600,
        description="Timeout for fetching one file; a file that exceeds it is recorded as failed.",
    )
    max_file_bytes: int = Field(
        default=2 * 1024**3, ge=1,
        description="Files larger than this are recorded as failed (oversized) and skipped.",
    )

    @field_validator("uri")
    @classmethod
    def _no_inline_credentials(cls, uri: str) -> str:
        head = uri.split("?", 1)[0]
        if "://" in head and "@" in head.split("://", 1)[1].split("/", 1)[0]:
            raise PydanticCustomError(
                "inline_secret",
                "must not embed credentials (got a user:password@ part); put them in a Secret and "
                "reference it with spec.source.secretRef",
            )
        return uri


class VideoPreprocess(PrismModel):
    """How a video becomes items: sampled frames, plus its audio track as audio items."""

    frames_per_second: float = Field(default=1.0, gt=0, le=60,
                                   description="Frames sampled per second of video.")
    max_frames: int = Field(default=600, ge=1, le=100_000,
                           description="At most this many frames per video (evenly spread beyond it).")
    audio: bool = Field(default=True, description="Also extract the audio track as audio items.")
    max_source_frames: int = Field(
        default=1_000_000, ge=1, le=100_000_000,
        description="Videos with more frames than this (about 9 hours at 30 fps) are recorded as failed "
        "before any frame is decoded; the frame index is held in memory while a video is read.")


class ImagePreprocess(PrismModel):
    """How an image (and each sampled video frame) is decoded."""

    max_side: int = Field(default=1024, ge=16, le=16384,
                         description="Longest side after decoding, in pixels (JPEGs decode at reduced size).")
    max_pixels: int = Field(
        default=178_956_970, ge=1, le=4_000_000_000,
        description="Images and video frames with more source pixels (width x height) than this are "
        "recorded as failed before they are decoded (decompression bombs).")


class AudioPreprocess(PrismModel):
    """How audio (files and video tracks) becomes items."""

    sample_rate: int = Field(default=16000, ge=8000, le=48000,
                            description="Resample to this rate, in Hz (mono).")
    chunk_seconds: float = Field(default=30.0, gt=0, le=600,
                                description="Length of each audio item, in seconds.")
    max_duration_seconds: float = Field(
        default=14_400, gt=0, le=604_800,
        description="Audio (files and video tracks) longer than this is recorded as failed. Decoded "
        "samples are spooled to a temporary file, not held in memory: this bounds that file (4 hours at "
        "16 kHz: 0.9 GB) and the decode time.")


class DocumentPreprocess(PrismModel):
    """How documents (PDF, plain text, Markdown) become text items."""

    chunk_chars: int = Field(default=1500, ge=100, le=100_000,
                            description="Characters per text chunk.")
    overlap_chars: int = Field(default=200, ge=0, le=50_000,
                              description="Characters shared by consecutive chunks; less than chunkChars.")
    max_pages: int = Field(default=5000, ge=1, le=1_000_000,
                           description="PDFs with more pages than this are recorded as failed.")
    max_chars: int = Field(
        default=20_000_000, ge=1000, le=1_000_000_000,
        description="Documents whose text is longer than this many characters are recorded as failed "
        "(the text and its chunks are held in memory while a document is read).")


# Bounds decide only whether a file is decoded at all (past one it fails whole), never what a
# decoded file's points are: raising one must not make an incremental run redo finished files.
DECODE_BOUNDS = {"video": ("maxSourceFrames",), "image": ("maxPixels",), "audio": ("maxDurationSeconds",),
                 "document": ("maxPages", "maxChars")}


class Preprocess(PrismModel):
    """How each modality becomes items. Every file is read and decoded once."""

    video: VideoPreprocess = Field(default_factory=VideoPreprocess, description=VideoPreprocess.__doc__)
    image: ImagePreprocess = Field(default_factory=ImagePreprocess, description=ImagePreprocess.__doc__)
    audio: AudioPreprocess = Field(default_factory=AudioPreprocess, description=AudioPreprocess.__doc__)
    document: DocumentPreprocess = Field(default_factory=DocumentPreprocess,
                                         description=DocumentPreprocess.__doc__)

    def point_settings(self) -> dict:
        """The wire form less the bounds: the settings that shape the points (incremental's run key)."""
        wire = self.to_wire()
        return {kind: {k: v for k, v in section.items() if k not in DECODE_BOUNDS.get(kind, ())}
                for kind, section in wire.items()}


class ExtractorResources(PrismModel):
    """What one actor of this extractor needs on a Ray worker."""

    gpu: float = Field(default=0, ge=0, le=16, description="GPUs per actor (fractions share a GPU).")
    cpu: float = Field(default=1, gt=0, le=256, description="CPUs per actor.")
    memory: Quantity | None = Field(default=None, description="Memory per actor, e.g. 4Gi (a Ray scheduling hint).")

    _coerce = field_validator("memory", mode="before")(classmethod(lambda cls, v: coerce_quantity(v)))


class Concurrency(PrismModel):
    """Actor pool bounds: ActorPoolStrategy(min_size=min, max_size=max). Never a fixed size, so jobs
    sharing a cluster both make progress."""

    min: int = Field(default=1, ge=1, le=1024, description="Actors kept alive (at least 1).")
    max: int = Field(default=1, ge=1, le=1024, description="Actors the pool may grow to (>= min).")


class ServeRef(PrismModel):
    """A Ray Serve deployment that already holds this extractor's model warm (a SearchService's, or
    `prism serve`'s): batch stages call it through a DeploymentHandle instead of loading the model in
    every actor. The deployment must serve the same kind, model and version; its results equal the
    in-process extractor's. The job must run on the Ray cluster that serves it (cluster.existing)."""

    app: str = Field(default="search", pattern=r"^[A-Za-z0-9_.-]{1,128}$",
                     description="The Serve application's name (a SearchService's is 'search').")
    deployment: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$",
                            description="The deployment's name: the extractor's name in the served collection.")
    max_in_flight: int = Field(default=4, ge=1, le=1024,
                               description="Requests one batch actor keeps in flight to the deployment.")
    timeout_seconds: float = Field(default=120, gt=0, le=3600,
                                   description="Timeout of one request; a timed-out batch fails its items.")


class ExtractorSpec(PrismModel):
    """One model applied to every item of the modalities it supports."""

    name: str = Field(pattern=EXTRACTOR_NAME, max_length=63,
                      description="Unique name; names the Qdrant vector and the payload key.")
    kind: str = Field(
        max_length=256,
        description="A built-in kind (" + ", ".join(BUILTIN_KINDS) + ") or a plug-in "
        "'python: package.module:Class'.",
    )
    model: str | None = Field(
        default=None, pattern=MODEL_URI, max_length=1024,
        description="hf://org/name[@revision], file:///path, s3://bucket/key, gs://..., or "
        "package://<python-package>. Omitted: the kind's packaged default.",
    )
    batch_size: int = Field(default=32, ge=1, le=65536, description="Items per model call.")
    resources: ExtractorResources = Field(default_factory=ExtractorResources,
                                          description=ExtractorResources.__doc__)
    concurrency: Concurrency = Field(default_factory=Concurrency, description=Concurrency.__doc__)
    serve: ServeRef | None = Field(default=None, description=ServeRef.__doc__)
    options: dict[str, Any] = Field(
        default_factory=dict, max_length=OPTIONS_MAX_KEYS,
        description=f"Kind-specific options (see the extractor catalogue in the README): at most {OPTIONS_MAX_KEYS} "
        f"entries, {OPTIONS_MAX_DEPTH} levels and {OPTIONS_MAX_BYTES // 1024} KiB as JSON.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        import re

        if kind in BUILTIN_KINDS or re.match(PLUGIN_KIND, kind):
            return kind
        raise PydanticCustomError(
            "unknown_kind",
            "unknown extractor kind '{got}'; use one of {allowed} or 'python: package.module:Class'",
            {"got": kind, "allowed": ", ".join(BUILTIN_KINDS)},
        )

    @field_validator("options")
    @classmethod
    def _bounded_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        try:
            check_bounds(options)
        except OptionsTooLarge as err:
            raise PydanticCustomError("options_bounds", "{why}", {"why": str(err)}) from None
        return options

    @property
    def plugin_path(self) -> str | None:
        """'package.module:Class' for plug-in kinds, else None."""
        return self.kind.split(":", 1)[1].strip() if self.kind.startswith("python:") else None


class QdrantSink(PrismModel):
    """The Qdrant collection the points go to."""

    url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]+$", max_length=512,
        description="Qdrant server URL. Omit for local runs (`prism run`): embedded Qdrant under .prism/.",
    )
    collection: str = Field(pattern=COLLECTION_NAME, description="Collection name; created if missing.")
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Qdrant API key (exposed to Ray pods as QDRANT_API_KEY).",
    )
    batch_size: int = Field(default=256, ge=1, le=10_000, description="Points per upsert.")
    timeout_seconds: float = Field(default=30, gt=0, le=600,
                                  description="Timeout of one Qdrant request.")

    @field_validator("collection")
    @classmethod
    def _not_prism_own(cls, collection: str) -> str:
        if PRISM_MARK in collection:
            raise PydanticCustomError(
                "reserved_collection",
                "must not contain '{mark}' (got '{got}'): Prism keeps <collection>{suffix} beside each "
                "collection for its own records; choose another name",
                {"mark": PRISM_MARK, "got": collection, "suffix": FILES_COLLECTION_SUFFIX},
            )
        return collection

    @field_validator("url")
    @classmethod
    def _no_inline_key(cls, url: str | None) -> str | None:
        if url and ("api_key=" in url.lower() or "@" in url.split("://", 1)[1].split("/", 1)[0]):
            raise PydanticCustomError(
                "inline_secret",
                "must not embed credentials; put the API key in a Secret and reference it with "
                "spec.sink.qdrant.apiKeySecretRef",
            )
        return url


class SinkSpec(PrismModel):
    """Where the points go."""

    qdrant: QdrantSink = Field(description=QdrantSink.__doc__)


class HeadGroup(PrismModel):
    """The Ray head pod. It always starts with num-cpus "0": it schedules, never computes."""

    cpu: Quantity = Field(default="2", description="CPU request and limit of the head pod.")
    memory: Quantity = Field(default="8Gi", description="Memory request and limit of the head pod.")

    _coerce = field_validator("cpu", "memory", mode="before")(classmethod(lambda cls, v: coerce_quantity(v)))


class Toleration(PrismModel):
    """A Kubernetes toleration for worker pods."""

    key: str | None = Field(default=None, max_length=316, description="Taint key.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all.")
    toleration_seconds: int | None = Field(default=None, ge=0,
                                          description="For NoExecute: how long the pod stays bound.")


class WorkerGroup(PrismModel):
    """A Ray worker group; autoscaled between minReplicas and maxReplicas."""

    name: str = Field(pattern=DNS1123_LABEL, max_length=15, description="Group name (at most 15 characters).")
    gpus: int = Field(default=0, ge=0, le=16, description="GPUs per worker pod (nvidia.com/gpu).")
    cpu: Quantity = Field(default="4", description="CPU request and limit per worker pod.")
    memory: Quantity = Field(default="16Gi", description="Memory request and limit per worker pod.")
    min_replicas: int = Field(default=0, ge=0, le=10_000, description="Fewest worker pods.")
    max_replicas: int = Field(default=4, ge=1, le=10_000, description="Most worker pods.")
    node_selector: dict[Annotated[str, Field(max_length=316)], Annotated[str, Field(max_length=63)]] = Field(
        # maxProperties bounds the CEL key rule's cost: the real API server refused the CRD (rule cost
        # 3.8x over budget) with an unbounded map.
        default_factory=dict, max_length=64, description="Node labels the worker pods require (at most 64).")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32,
                                          description="Tolerations of the worker pods.")

    _coerce = field_validator("cpu", "memory", mode="before")(classmethod(lambda cls, v: coerce_quantity(v)))


def _default_worker_groups() -> list[WorkerGroup]:
    return [WorkerGroup(name="cpu", cpu="4", memory="16Gi", minReplicas=1, maxReplicas=4)]


class Cluster(PrismModel):
    """The Ray cluster the job runs on: owned (created and deleted with the job) or existing."""

    existing: str = Field(
        default="", max_length=63, pattern=r"^([a-z]([-a-z0-9]*[a-z0-9])?)?$",
        description="Name of an existing RayCluster (same namespace) to run on; the job then owns "
        "only its RayJobs. Empty: create a RayCluster for this job. A RayService's cluster (a "
        "SearchService's) is replaced by KubeRay whenever the RayService's cluster spec changes, which "
        "kills the batch jobs on it: such a cluster is refused unless the job carries the annotation "
        "prism.dev/run-on-rayservice-cluster: \"true\".",
    )
    ray_version: str = Field(default="2.60.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$",
                            description="Ray version of the image.")
    image: str = Field(default="ghcr.io/prism-extract/worker:0.1.0", min_length=1, max_length=512,
                       description="Worker image (Ray, torch and the prism pipeline).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of Ray pods.")
    head: HeadGroup = Field(default_factory=HeadGroup, description=HeadGroup.__doc__)
    worker_groups: list[WorkerGroup] = Field(
        default_factory=_default_worker_groups, min_length=1, max_length=16,
        description="Worker groups; GPU extractors need a group with gpus > 0.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    batch_resource: int = Field(
        default=1, ge=1, le=1024,
        description="Each worker advertises the synthetic Ray resource {batch: n}; every pipeline stage "
        "asks for a share of it, so stages schedule only on Prism workers.",
    )


class FailurePolicy(PrismModel):
    """When bad files fail the job."""

    max_failed_file_ratio: float = Field(
        default=0.05, ge=0, le=1,
        description="The job fails if more than this fraction of files fail (corrupt, unsupported, ...).",
    )


class Retries(PrismModel):
    """Retries of a failed Ray job: each is a new RayJob on the same RayCluster."""

    limit: int = Field(default=2, ge=0, le=20, description="Attempts after the first.")


KEEP_NONE, KEEP_CLUSTER, KEEP_HEAD = "None", "Cluster", "Head"


class OnFailure(PrismModel):
    """What happens to the RayCluster of a job that failed (phase Failed), like KubeRay's
    deletionStrategy.onFailure: by default it goes as any finished job's does, after
    ttlSecondsAfterFinished. Only a RayCluster the job owns: spec.cluster.existing is never deleted
    nor scaled by Prism."""

    keep: Literal["None", "Cluster", "Head"] = Field(
        default=KEEP_NONE,
        description="None: ttlSecondsAfterFinished applies, as to a job that succeeded. Cluster: keep the "
        "whole RayCluster (head, workers, dashboard) for ttlSeconds. Head: scale every worker group to zero "
        "(replicas and minReplicas 0, like KubeRay's DeleteWorkers) when the job fails and keep the head "
        "(dashboard, `ray job logs`) for ttlSeconds. Not allowed with spec.cluster.existing.",
    )
    ttl_seconds: int | None = Field(
        default=None, ge=0,
        description="With keep Cluster or Head: delete the RayCluster this many seconds after the job failed, "
        "instead of after ttlSecondsAfterFinished. Unset: keep it until the ExtractionJob is deleted.",
    )


class CleanupPolicy(PrismModel):
    """What outlives a finished job, for debugging. Whatever this says, when a job ends Failed (or
    Succeeded with failed files) its failure ledger and the tail of its driver log are saved in the
    ConfigMap <job>-debug (see status.debug) before any RayCluster is deleted."""

    on_failure: OnFailure = Field(default_factory=OnFailure, description=OnFailure.__doc__)


class ExtractionJobSpec(PrismModel):
    """What to extract, from which files, into which collection, on what cluster."""

    source: SourceSpec = Field(description=SourceSpec.__doc__)
    preprocess: Preprocess = Field(default_factory=Preprocess, description=Preprocess.__doc__)
    extractors: list[ExtractorSpec] = Field(
        min_length=1, max_length=64,
        description="Extractors, applied in order to one stream of decoded items.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    sink: SinkSpec = Field(description=SinkSpec.__doc__)
    cluster: Cluster = Field(default_factory=Cluster, description=Cluster.__doc__)
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy,
                                         description=FailurePolicy.__doc__)
    retries: Retries = Field(default_factory=Retries, description=Retries.__doc__)
    startup_deadline_seconds: int = Field(
        default=1800, ge=1, le=86_400,
        description="Fail if the cluster is not running the job within this many seconds.",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1,
        description="Fail the job if it runs longer than this many seconds (mutable).",
    )
    stall_timeout_seconds: int = Field(
        default=900, ge=10, le=86_400,
        description="Fail the pipeline if no file completes for this many seconds.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0,
        description="Delete the RayCluster this many seconds after the job finishes (a failed job's unless "
        "cleanup.onFailure keeps it); the ExtractionJob, its status and its <job>-debug ConfigMap stay "
        "(mutable).",
    )
    cleanup: CleanupPolicy = Field(default_factory=CleanupPolicy, description=CleanupPolicy.__doc__)
    suspend: bool = Field(default=False, description="Stop the Ray job and suspend the cluster; "
                          "false again resumes with a new attempt (mutable).")
    incremental: bool = Field(
        default=True,
        description="Skip files already recorded in the sink with the same extractor versions: a file whose "
        "listing fingerprint (local size + modification time, S3 ETag, GCS generation) matches its record is "
        "skipped without being read; one whose fingerprint changed is read, hashed, and skipped without a decode "
        "when its content hash matches. false extracts every file again (prism run --full).",
    )
    deleted_files: Literal["Keep", "Delete"] = Field(
        default="Keep",
        description="Keep: points of files the collection records but this run's listing no longer lists "
        "(deleted, moved, renamed, now excluded) stay. Delete: once the stream ended, those files lose their "
        "points and records, so the collection mirrors the source; every file the collection records counts, "
        "whichever job wrote it. An empty listing deletes nothing (a missing mount must not wipe a collection).",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ExtractionJobSpec:
        from .rules import spec_rule_errors

        errors = spec_rule_errors(self)
        if errors:
            raise PydanticCustomError("prism_rules", "{summary}", {
                "summary": "; ".join(f"{p}: {m}" for p, m in errors),
                "errors": errors,
            })
        return self
