"""`prism serve --collection NAME`: the SearchService's Serve application on this machine.

It runs the same application a RayService runs (serve.app:build) on local Ray, or on the cluster
RAY_ADDRESS names. A local Ray advertises the synthetic `batch` resource like `prism run`'s, so a
`prism run` with RAY_ADDRESS set to the recorded address runs its batch job beside the service (the
replicas never ask for `batch`). Over the embedded store the ingress replica opens the store, and so
holds its lock while the service runs: a `prism run` into the same state dir meanwhile gets the
store-busy error, and `prism search` finds the service through its record,
<state dir>/serve/<collection>.json (prism_api.search_service.LocalServiceRecord), and queries it over
HTTP instead.

The first SIGINT or SIGTERM shuts Serve down (the store's lock goes with the replicas), removes the
record and exits 130 or 143; a second one kills this process's Ray at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prism_api.conventions import BATCH_RESOURCE
from prism_api.search_service import (
    ROUTE_INFO,
    SERVE_APP_NAME,
    LocalServiceRecord,
    ServeAppArgs,
    ServiceInfo,
    local_service_path,
)
from prism_pipeline.interrupts import Interrupts, say

log = logging.getLogger("prism.serve")

START_TIMEOUT_S = 600.0   # deploying: every model loaded (a first load may compile or unpack weights)
INFO_TIMEOUT_S = 60.0     # after the application runs, until the proxy routes GET /info to it
PROBE_TIMEOUT_S = 2.0     # one GET /info
POLL_S = 0.5              # status polling while deploying
WATCH_S = 10.0            # how often a running service checks that its application is still there
BATCH_RESOURCE_AMOUNT = 1.0  # as ClusterSpec.batchResource's default: a beside-run job's stages share it
EXIT_FAILED = 1


class ServeStartError(Exception):
    """The service could not start; the message says why and what to do."""


class ServeStopped(BaseException):  # noqa: N818 - like KeyboardInterrupt: no `except Exception` takes it
    """A signal stopped the service (`signum`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Running:
    """A started service: its record and what GET /info answered."""

    record: LocalServiceRecord
    info: ServiceInfo
    beside_env: dict[str, str]  # what a `prism run` needs to run its batch job on the same Ray


def beside_env(ray_address: str) -> dict[str, str]:
    """The environment of a `prism run` that runs on this service's Ray: its address and, where the
    cluster checks tokens (Ray's default for a local cluster since 2.5x), token mode: with an explicit
    RAY_ADDRESS Ray does not turn it on by itself (the token is read from ~/.ray/auth_token)."""
    env = {"RAY_ADDRESS": ray_address}
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        env["RAY_AUTH_MODE"] = "token"
    return env


def serve_locally(args: ServeAppArgs, *, host: str = "127.0.0.1", port: int = 8000, app_name: str = SERVE_APP_NAME,
                  state_dir: str | Path | None = None, replicas: int | None = None, verbose: bool = False,
                  start_timeout_s: float = START_TIMEOUT_S, on_ready: Callable[[Running], None] | None = None) -> int:
    """Run the application for `args` on Serve at http://host:port until SIGINT or SIGTERM.

    `state_dir` is where the record goes (default: args.stateDir; give it when args name a Qdrant
    server). `replicas` sets every model deployment's replicas (args.deployments otherwise). `on_ready`
    is called once GET /info answers. Returns 128 + the signal's number when
    stopped, 1 when the service could not start or its application went away (the reason on stderr).
    """
    records = Path(state_dir if state_dir is not None else args.state_dir or ".prism")
    interrupts = Interrupts("prism serve", _stop_serving)
    interrupts.install()  # ray.init replaces the SIGTERM handler: installed again once Ray is up
    own_ray, record_path = False, None
    try:
        try:
            _refuse_running(records, args.collection)
            _check_port(host, port)
            if replicas is not None:
                try:
                    args = with_replicas(args, replicas)
                except ValueError as err:  # no such collection
                    raise ServeStartError(str(err)) from err
            app = build_app(args)  # before Ray starts: a model version mismatch fails at once
            own_ray = start_ray(args, verbose=verbose)
            interrupts.install()
            running = _deploy(app, args, host=host, port=port, app_name=app_name, start_timeout_s=start_timeout_s)
            record_path = write_record(records, running.record)
        except ServeStartError as err:
            print(f"prism serve: {err}", file=sys.stderr)
            return EXIT_FAILED
        except Exception as err:  # a bug, or Ray/Serve failing in a way not foreseen: one line unless -v
            if verbose:
                traceback.print_exc()
            print(f"prism serve: cannot start the service: {type(err).__name__}: {_one_line(err)}"
                  + ("" if verbose else "; rerun with -v for the traceback"), file=sys.stderr)
            return EXIT_FAILED
        if on_ready:
            on_ready(running)
        return _watch(app_name)
    except ServeStopped as stop:
        say(f"prism serve: {signal.Signals(stop.signum).name}: shutting the service down\n")
        return 128 + stop.signum
    finally:
        interrupts.shutting_down = True
        if record_path is not None:
            remove_record(record_path, os.getpid())
        _shutdown_serve(app_name, own_ray)
        interrupts.restore()


# ---- Ray and Serve -----------------------------------------------------------------------------------

def start_ray(args: ServeAppArgs, *, verbose: bool = False) -> bool:
    """Connect to RAY_ADDRESS, else start a local Ray advertising `batch` (as prism_pipeline.runner's
    start_ray does for `prism run`). False when this process was already connected or joined a
    cluster it did not start (its owner stops it)."""
    import ray

    from prism_pipeline.runner import QUIET_BACKEND_LOG_LEVEL, _stderr_held

    if ray.is_initialized():
        return False
    quiet = logging.WARNING if verbose else logging.ERROR
    try:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(logging_level=quiet, log_to_driver=verbose)
            return False
        backend = None if verbose or "RAY_BACKEND_LOG_LEVEL" in os.environ else QUIET_BACKEND_LOG_LEVEL
        if backend:
            os.environ["RAY_BACKEND_LOG_LEVEL"] = backend
        try:
            with _stderr_held(bool(backend)):
                ray.init(num_cpus=local_cpus(args), resources={BATCH_RESOURCE: BATCH_RESOURCE_AMOUNT},
                         include_dashboard=False, logging_level=quiet, log_to_driver=verbose)
        finally:
            if backend:
                os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    except Exception as err:  # ports, /tmp, shared memory, an unreachable RAY_ADDRESS: one line
        first = " ".join(str(err).split())[:500]
        raise ServeStartError(f"cannot start Ray on this machine: {type(err).__name__}: {first}") from err
    return True


def with_replicas(args: ServeAppArgs, replicas: int) -> ServeAppArgs:
    """`args` with every model deployment of the collection (its recorded query-embedding extractors)
    at `replicas` replicas, their other settings kept."""
    from prism_api.search_service import ReplicaBounds
    from prism_pipeline.serve.app import read_record
    from prism_pipeline.serve.model_deployment import servable_entries

    try:
        recorded = servable_entries(read_record(args))
    finally:
        _release_store(args)
    bounds = ReplicaBounds(min=replicas, max=replicas)
    deployments = [args.deployment(e["name"]).model_copy(update={"replicas": bounds}) for e in recorded]
    return args.model_copy(update={"deployments": deployments})


def local_cpus(args: ServeAppArgs) -> int:
    """Logical CPUs for a local Ray: the machine's, and at least enough for every listed deployment at
    its maximum replicas plus two unlisted ones at the defaults and a batch job's reader and sink
    beside them (logical CPUs only schedule; a laptop with fewer cores still runs every replica)."""
    listed = sum(d.resources.cpu * d.replicas.max for d in args.deployments)
    return int(max(os.cpu_count() or 1, listed + 2 + 2) + 0.999)


def build_app(args: ServeAppArgs) -> Any:
    """The bound application (serve.app.build); it reads the collection's record and checks each
    model's version on this machine, which needs no Ray. ServeStartError with the builder's message."""
    from prism_pipeline.serve.app import build

    try:
        return build(args.to_wire())
    except Exception as err:  # the builder's checks: the collection, its recorded models and versions
        raise ServeStartError(f"cannot serve collection {args.collection!r}: {_one_line(err, 2000)}") from err
    finally:
        _release_store(args)  # the builder read the collection's record; the ingress replica opens the store


def _deploy(app: Any, args: ServeAppArgs, *, host: str, port: int, app_name: str, start_timeout_s: float) -> Running:
    """Start Serve's HTTP proxy on host:port, deploy the application and wait, bounded, until it runs
    and GET /info answers through the proxy."""
    from ray import serve

    if not logging.getLogger().isEnabledFor(logging.INFO):  # without -v: no "Started Serve ..." lines
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port})
    serve.run_many([serve.RunTarget(app, name=app_name, route_prefix="/")], wait_for_applications_running=False)
    _wait_running(app_name, start_timeout_s)
    url = f"http://{_url_host(host)}:{port}"
    info = wait_for_info(url, INFO_TIMEOUT_S)
    import ray

    record = LocalServiceRecord(url=url, pid=os.getpid(), collection=args.collection, app=app_name,
                                qdrant_url=args.qdrant_url, ray_address=ray.get_runtime_context().gcs_address,
                                started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return Running(record, info, beside_env(record.ray_address))


def _wait_running(app_name: str, timeout_s: float) -> None:
    """Until the application is RUNNING; ServeStartError with Serve's own message (the replica's
    exception: a model version mismatch, a missing collection) when it fails or times out."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status, message = "NOT_STARTED", ""
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        status, message = (getattr(app.status, "value", app.status), app.message) if app else ("NOT_STARTED", "")
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise ServeStartError(f"application {app_name!r} failed to deploy: {_replica_error(message)}")
        time.sleep(POLL_S)
    raise ServeStartError(f"application {app_name!r} is not running after {timeout_s:.0f} s (status {status}"
                          f"{': ' + _one_line(message) if message else ''}); its replicas may be waiting for CPUs "
                          "or still loading models: rerun with -v to see Ray's logs")


def _replica_error(message: str) -> str:
    """Serve's DEPLOY_FAILED message holds the replica's traceback; its last line is the error."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith(("File ", "Traceback", "^", "~"))]
    last = errors[-1] if errors else message
    return _one_line(last, 1000)


def wait_for_info(url: str, timeout_s: float) -> ServiceInfo:
    """GET <url>/info until it answers 200 with a ServiceInfo (bounded by `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            return fetch_info(url, PROBE_TIMEOUT_S)
        except (OSError, ValueError) as err:
            last = _one_line(err)
        if time.monotonic() >= deadline:
            raise ServeStartError(f"the application runs but GET {url}{ROUTE_INFO} did not answer within "
                                  f"{timeout_s:.0f} s ({last})")
        time.sleep(POLL_S)


def fetch_info(url: str, timeout_s: float) -> ServiceInfo:
    """One GET <url>/info. OSError when nothing answers, ValueError when something else does."""
    with urllib.request.urlopen(url + ROUTE_INFO, timeout=timeout_s) as response:
        body = response.read(1 << 20)
    try:
        return ServiceInfo.model_validate(json.loads(body))
    except Exception as err:  # noqa: BLE001 - pydantic or JSON: not this application answering
        raise ValueError(f"GET {url}{ROUTE_INFO} answered something else: {_one_line(err)}") from err


def _watch(app_name: str) -> int:
    """Serve until a signal; 1 if the application goes away meanwhile (Ray stopped, someone deleted it)."""
    from ray import serve

    while True:
        time.sleep(WATCH_S)
        try:
            app = serve.status().applications.get(app_name)
        except Exception as err:  # Ray is gone
            print(f"prism serve: lost the Ray cluster: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
            return EXIT_FAILED
        if app is None:
            print(f"prism serve: application {app_name!r} was deleted; stopping", file=sys.stderr)
            return EXIT_FAILED


def _shutdown_serve(app_name: str, own_ray: bool) -> None:
    """Serve down (its replicas release the store's lock), then Ray if this process started it. On a
    cluster it joined, only this application is deleted: other applications there are not ours."""
    import ray

    from prism_pipeline.runner import stop_ray

    if not ray.is_initialized():
        return
    with contextlib.suppress(Exception):
        from ray import serve

        # Its replicas stop gracefully (the ingress closes the store). serve.shutdown() is not needed
        # on a Ray this process started (it goes down next) and would log the controller's own death.
        serve.delete(app_name, _blocking=True)
    if own_ray:
        stop_ray()


def _release_store(args: ServeAppArgs) -> None:
    if args.state_dir is not None:
        from prism_pipeline.sink.embedded import close_embedded

        close_embedded(args.state_dir)


# ---- The record ---------------------------------------------------------------------------------------

def write_record(state_dir: str | Path, record: LocalServiceRecord) -> Path:
    """Write the record atomically (a reader never sees half of it); its path."""
    path = Path(local_service_path(state_dir, record.collection))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(record.to_wire(), indent=2) + "\n")
        partial.replace(path)
    except OSError as err:
        raise ServeStartError(f"cannot record the running service in {path}: {err.strerror or err}; "
                              "pass a writable --state-dir") from err
    return path


def read_record(state_dir: str | Path, collection: str) -> LocalServiceRecord | None:
    """The recorded service for `collection`, None when there is none or it cannot be read."""
    path = Path(local_service_path(state_dir, collection))
    try:
        return LocalServiceRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def remove_record(path: Path, pid: int) -> None:
    """Remove the record if it is still this process's (another `prism serve` may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if LocalServiceRecord.model_validate_json(path.read_text()).pid == pid:
            path.unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _refuse_running(state_dir: Path, collection: str) -> None:
    """A live service for the collection already recorded here: say where it is. A stale record (its
    process gone) is removed."""
    record = read_record(state_dir, collection)
    if record is None:
        return
    if record.pid != os.getpid() and pid_alive(record.pid):
        raise ServeStartError(f"collection {collection!r} is already served at {record.url} by process "
                              f"{record.pid} (recorded in {local_service_path(state_dir, collection)}); stop it "
                              "first, or use that service")
    with contextlib.suppress(OSError):
        Path(local_service_path(state_dir, collection)).unlink()


def _check_port(host: str, port: int) -> None:
    """Refuse a port something already listens on, before Ray starts (Serve's proxy would retry binding
    it in the background and the application would never answer)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise ServeStartError(f"cannot listen on {host}:{port} ({err.strerror or err}); "
                                  "pass another --port or --host") from err


def _url_host(host: str) -> str:
    """The host part of the service's URL: a wildcard bind is reached on loopback."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _one_line(err: Any, limit: int = 500) -> str:
    return " ".join(str(err).split())[:limit]


# ---- Signals ------------------------------------------------------------------------------------------

def _stop_serving(signum: int) -> None:
    """The first SIGINT/SIGTERM of `prism serve`: ServeStopped in the main thread (shutdown follows)."""
    raise ServeStopped(signum)
