"""The Serve application's builder (prism_api.search_service.SERVE_IMPORT_PATH): ServeAppArgs in, a
bound application out, for a RayService's serveConfigV2 (`args`) and `prism serve`.

It reads the collection's record (which extractors wrote it, at which model versions), checks each
servable extractor's version on this machine before binding anything (a mismatch fails the deploy
at once, naming both versions: on KubeRay the RayService shows DEPLOY_FAILED with the message), and
binds a ModelDeployment per servable extractor (named for it) and the `Ingress` (capitalised, so it
never collides with an extractor name, which is lower case) taking their handles.

Replicas never ask for the `batch` resource: batch stages always do, so a batch job sharing the
cluster cannot take the replicas' CPUs or GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ray import serve

from prism_api.errors import format_validation_error
from prism_api.search_service import ServeAppArgs, ServeDeployment
from prism_pipeline.search import SearchError, collection_meta, open_collection

from .ingress import Ingress, IngressConfig
from .model_deployment import ModelDeployment, Servable, servables

INGRESS_NAME = "Ingress"
# The ingress parses requests and calls Qdrant: a fraction of a CPU. Embedded mode: one replica,
# the only process that may open the store. Server mode: it scales with the traffic.
INGRESS_CPUS = 0.25
INGRESS_SERVER_REPLICAS = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}
INGRESS_MAX_ONGOING = 64


def parse_args(args: dict[str, Any] | ServeAppArgs) -> ServeAppArgs:
    """ServeAppArgs, or ValueError naming each bad field (`args.deployments[0].replicas: ...`)."""
    if isinstance(args, ServeAppArgs):
        return args
    if not isinstance(args, dict):
        raise ValueError(f"args: must be a mapping of ServeAppArgs (got {type(args).__name__})")
    try:
        parsed = ServeAppArgs.model_validate(args)
    except ValidationError as err:
        problems = format_validation_error(err, ("args",))
        raise ValueError("invalid Serve application arguments: " + "; ".join(str(p) for p in problems)) from None
    if parsed.state_dir is not None:  # replicas run in other working directories
        parsed = parsed.model_copy(update={"state_dir": str(Path(parsed.state_dir).expanduser().resolve())})
    return parsed


def read_record(args: ServeAppArgs) -> list[dict[str, Any]]:
    """The collection's recorded extractors, from the embedded store (released again: the ingress
    opens it) or the server; ValueError naming the field when there is no such collection."""
    where = "args.stateDir" if args.state_dir else "args.qdrantUrl"
    try:
        with open_collection(args.collection, state_dir=args.state_dir or ".prism", url=args.qdrant_url) as sink:
            return list(collection_meta(sink, args.collection)["extractors"])
    except SearchError as err:
        raise ValueError(f"args.collection {args.collection!r} ({where}): {err}") from err


def deployment_options(settings: ServeDeployment) -> dict[str, Any]:
    """Serve options of one model deployment (ServeDeployment.serve_options: the RayService shows the same)."""
    return settings.serve_options()


def ingress_options(args: ServeAppArgs) -> dict[str, Any]:
    scaling: dict[str, Any] = ({"num_replicas": 1} if args.state_dir
                               else {"autoscaling_config": dict(INGRESS_SERVER_REPLICAS)})
    return {"name": INGRESS_NAME, "ray_actor_options": {"num_cpus": INGRESS_CPUS},
            "max_ongoing_requests": INGRESS_MAX_ONGOING, **scaling}


def plan(args: dict[str, Any] | ServeAppArgs) -> tuple[ServeAppArgs, list[Servable]]:
    """The parsed arguments and the checked servable extractors (ModelVersionMismatch, ValueError)."""
    parsed = parse_args(args)
    found = servables(read_record(parsed))
    if not found:
        raise ValueError(f"args.collection {parsed.collection!r}: no extractor of it embeds queries (servable "
                         "kinds: text-embedding, image-embedding); nothing to serve")
    names = {s.recorded["name"] for s in found}
    unknown = [d.extractor for d in parsed.deployments if d.extractor not in names]
    if unknown:
        raise ValueError(f"args.deployments: {', '.join(repr(n) for n in unknown)} not served by collection "
                         f"{parsed.collection!r} (its embedding extractors: {', '.join(sorted(names))})")
    return parsed, found


def build(args: dict[str, Any]) -> serve.Application:
    """The application for one collection (SERVE_IMPORT_PATH)."""
    parsed, found = plan(args)
    handles = {}
    for s in found:
        settings = parsed.deployment(s.recorded["name"])
        handles[s.recorded["name"]] = (serve.deployment(ModelDeployment).options(**deployment_options(settings))
                                       .bind(s.recorded, gpu=settings.resources.gpu))
    config = IngressConfig(collection=parsed.collection, qdrant_url=parsed.qdrant_url, state_dir=parsed.state_dir,
                           timeout_seconds=parsed.timeout_seconds, models=[s.model for s in found],
                           inputs={s.recorded["name"]: s.inputs for s in found})
    return serve.deployment(Ingress).options(**ingress_options(parsed)).bind(config, handles)
