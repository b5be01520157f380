"""Serve-backed extractors (spec.extractors[].serve): a batch stage that calls a warm Ray Serve
deployment instead of loading the model in every actor.

The driver builds the extractor as always (cheaply: output kind, vector size and version) and, before
the stream starts, checks that the named deployment exists on the Ray cluster this job runs on and
serves the same kind and model version (`check`). Each stage actor gets the deployment's handle in
place of setup() (`ServeBacked.connect`, same check) and sends each batch's items to
`ModelDeployment.extract`: split into at most serve.maxInFlight requests, all in flight together, each
bounded by serve.timeoutSeconds. A request past its timeout fails its batch's items (BatchTimedOut,
through the stage's per-item failure path, without retrying them one by one against a deployment that
does not answer); any other error is the extractor's, retried item by item like an in-process one.

Items travel as their ITEM_KEYS (decoded arrays, text; no outputs, errors or bookkeeping): Ray sends
numpy arrays without copying them through JSON. The replica runs the same extractor class at the same
version on them, so the vectors equal the in-process extractor's.

Serve replicas never ask for the `batch` resource; a Serve-backed stage, like every batch stage,
always does (pipeline.BATCH_SHARE), with only SERVE_BACKED_CPUS of CPU and no GPU: the model's
resources are the deployment's.
"""

from __future__ import annotations

import time
from typing import Any

from prism_api.job_spec import ServeRef
from prism_pipeline.extractors import Extractor, Vector
from prism_pipeline.preprocess.items import ITEM_KEYS

# CPUs one Serve-backed stage actor asks for: it pickles items and waits on the deployment.
SERVE_BACKED_CPUS = 0.25
# Bound of the lookups (handle, info()) made before any batch is sent.
LOOKUP_TIMEOUT_S = 60.0


class ServeBackedError(Exception):
    """The deployment is missing, unreachable or serves another model; the message names the field."""


class BatchTimedOut(Exception):  # noqa: N818 - reads as what happened to the batch
    """A request to the deployment ran past serve.timeoutSeconds: its batch's items fail."""


def handle_for(ref: ServeRef, where: str) -> Any:
    """The DeploymentHandle of ref.app/ref.deployment on the Ray cluster this process is connected to."""
    from ray import serve

    try:
        return serve.get_deployment_handle(ref.deployment, app_name=ref.app)
    except Exception as err:  # RayServeException (no Serve on this cluster), KeyError (no such deployment)
        raise ServeBackedError(
            f"{where}.serve: no Serve deployment {ref.deployment!r} in application {ref.app!r} on this Ray cluster "
            f"({_one_line(err)}); start the service first (`prism serve --collection NAME`, or a SearchService) and "
            "run the job on its cluster (RAY_ADDRESS, cluster.existing), or remove serve to load the model in the "
            "job") from err


def served_info(handle: Any, ref: ServeRef, where: str) -> dict[str, Any]:
    """What the deployment serves (ModelDeployment.info()): extractor, kind, model, version."""
    try:
        info = handle.info.remote().result(timeout_s=min(LOOKUP_TIMEOUT_S, max(ref.timeout_seconds, 10.0)))
    except Exception as err:
        raise ServeBackedError(f"{where}.serve: deployment {ref.app}/{ref.deployment} did not say what it serves "
                               f"(info()): {_one_line(err)}") from err
    if not isinstance(info, dict):
        raise ServeBackedError(f"{where}.serve: deployment {ref.app}/{ref.deployment} is not a Prism model "
                               f"deployment (info() returned {type(info).__name__})")
    return info


def mismatch(extractor: Extractor, info: dict[str, Any]) -> str | None:
    """Why the served model's results would differ from this job's extractor's, or None. Kind and model
    version decide the vectors; the model URI may be spelled differently for the same version."""
    spec = extractor.spec
    ours = {"kind": spec.kind, "version": extractor.version}
    for key, value in ours.items():
        if info.get(key) != value:
            return (f"it serves {key} {info.get(key)!r} (model {info.get('model')!r}, extractor "
                    f"{info.get('extractor')!r}) but this job's extractor {spec.name!r} is {key} {value!r} "
                    f"(model {spec.model or 'the default'!r}); name a deployment of the same model and version, "
                    "or remove serve to load the model in the job")
    if "options" in info and dict(info["options"] or {}) != dict(spec.options):
        return (f"it runs options {info['options']!r} but this job's extractor {spec.name!r} has options "
                f"{dict(spec.options)!r}: the vectors would differ; use the same options, or remove serve")
    return None


def check(extractor: Extractor, where: str) -> Any:
    """The deployment's handle, once it is known to serve `extractor`'s kind and version."""
    ref = extractor.spec.serve
    assert ref is not None
    if not isinstance(extractor.output, Vector):
        raise ServeBackedError(f"{where}.serve: only embedding extractors (a vector output) can be served")
    handle = handle_for(ref, where)
    problem = mismatch(extractor, served_info(handle, ref, where))
    if problem:
        raise ServeBackedError(f"{where}.serve: deployment {ref.app}/{ref.deployment} refused: {problem}")
    return handle


def check_all(extractors: list[Extractor]) -> None:
    """The driver's check, before the stream starts: every Serve-backed extractor's deployment exists
    and serves its model version. Raises ServeBackedError naming spec.extractors[i].serve."""
    for i, ex in enumerate(extractors):
        if ex.spec.serve is not None:
            check(ex, f"spec.extractors[{i}]")


class ServeBacked:
    """Stands for an extractor in a stage actor: its accepts() and output, the deployment's model."""

    def __init__(self, extractor: Extractor, ref: ServeRef, handle: Any):
        self.extractor, self.ref, self.handle = extractor, ref, handle
        self.name = extractor.name
        self.output = extractor.output

    @classmethod
    def connect(cls, extractor: Extractor, where: str = "spec.extractors[?]") -> ServeBacked:
        ref = extractor.spec.serve
        assert ref is not None
        return cls(extractor, ref, check(extractor, where))

    def accepts(self, item: dict) -> bool:
        return self.extractor.accepts(item)

    def __call__(self, items: list[dict]) -> list[Any]:
        """Outputs of `items`, in order: at most maxInFlight requests, sent together, each bounded by
        timeoutSeconds (BatchTimedOut past it)."""
        chunks = split(items, self.ref.max_in_flight)
        sent = time.monotonic()
        responses = [self.handle.extract.remote([compact(it) for it in chunk]) for chunk in chunks]
        outputs: list[Any] = []
        for i, (chunk, response) in enumerate(zip(chunks, responses, strict=True)):
            left = self.ref.timeout_seconds - (time.monotonic() - sent)
            try:
                got = response.result(timeout_s=max(left, 0.001))
            except TimeoutError as err:
                for late in responses[i:]:
                    late.cancel()
                raise BatchTimedOut(
                    f"deployment {self.ref.app}/{self.ref.deployment} did not answer a request of {len(chunk)} items "
                    f"within spec.extractors[].serve.timeoutSeconds={self.ref.timeout_seconds:g}") from err
            except BaseException:
                for late in responses[i + 1:]:
                    late.cancel()
                raise
            got = list(got)
            if len(got) != len(chunk):
                raise ValueError(f"deployment {self.ref.app}/{self.ref.deployment} returned {len(got)} outputs "
                                 f"for {len(chunk)} items")
            outputs += got
        return outputs


def compact(item: dict) -> dict:
    """The decoded item as the model reads it: no outputs, errors or stream bookkeeping."""
    return {k: item.get(k) for k in ITEM_KEYS}


def split(items: list, parts: int) -> list[list]:
    """`items` in at most `parts` contiguous chunks of nearly equal size."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return [c for c in chunks if c]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())[:400]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
