"""Live progress: one Ray actor per job, fed once per batch, serving Prometheus text.

Stages call `progress.add.remote(Counts(...))` once per batch and never wait for it (one actor takes
~8k calls/s; a per-row call or a ray.get on the hot path would throttle the pipeline). The actor
runs an HTTP server thread on the driver's node (the Ray head in a RayJob), where the operator
scrapes PROGRESS_PORT. What it serves is one prism_api.progress_report.ProgressReport (the contract
both sides share: its `to_prometheus()` here, its `from_prometheus()` in the operator). The driver's
stream is authoritative: at the end it pushes its exact totals with `finish`, and its verdict
(prism_api.outcome.Outcome) with `finish` or `set_outcome`.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prism_api.outcome import Outcome
from prism_api.progress_report import (
    CONTENT_TYPE,
    PROGRESS_PATH,
    Counts,
    FailedFile,
    ProgressReport,
    ReportIdentity,
)


class ProgressState:
    """The job's ProgressReport behind a lock (the actor's thread and the HTTP thread share it)."""

    def __init__(self, job: str, namespace: str = "", attempt: int = 1, files_total: int = 0):
        self._lock = threading.Lock()
        self.report = ProgressReport(ReportIdentity(job, namespace or "", int(attempt)), files_total=files_total,
                                     start_time=time.time())

    def add(self, counts: Counts, failures: list[FailedFile] = ()) -> None:
        with self._lock:
            self.report.add(counts, failures)

    def listed(self, files_total: int, complete: bool) -> None:
        with self._lock:
            self.report.listed(files_total, complete)

    def finish(self, totals: Counts, failures: list[FailedFile], outcome: str | None = None,
               message: str = "") -> None:
        with self._lock:
            self.report.finish(totals, failures, Outcome(outcome) if outcome is not None else None, message)

    def set_outcome(self, outcome: str, message: str = "") -> None:
        """Record the pipeline's verdict (an Outcome value; others are refused); the last one is served."""
        with self._lock:
            self.report.set_outcome(Outcome(outcome), message)

    def snapshot(self) -> ProgressReport:
        with self._lock:
            return copy.deepcopy(self.report)

    def prometheus(self) -> bytes:
        return self.snapshot().to_prometheus().encode()


def serve(state: ProgressState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve state.prometheus() on http://host:port/metrics from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] not in (PROGRESS_PATH, "/"):
                self.send_error(404)
                return
            body = state.prometheus()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes every few seconds would flood the job log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="prism-progress-http", daemon=True).start()
    return server


class ProgressActor:
    """The Ray actor wrapper (created with ray.remote in `start_progress_actor`)."""

    # Retrying a busy port: 1 s, doubling to at most 10 s, for as long as the job runs.
    RETRY_FIRST_S, RETRY_MAX_S = 1.0, 10.0

    def __init__(self, job: str, files_total: int, port: int | None, namespace: str = "", attempt: int = 1):
        self.state = ProgressState(job, namespace, attempt, files_total)
        self.server, self.error = None, None
        self._stopped = threading.Event()
        if port is not None:
            try:
                self.server = serve(self.state, port)
            except OSError as err:
                # Another driver on this node holds the port: another job on a shared
                # `cluster.existing`, or the previous job's actor not yet gone. Run without the
                # endpoint rather than fail the job, and take the port as soon as it is free.
                self.error = f"cannot serve progress on port {port}: {err.strerror or err}"
                threading.Thread(target=self._bind_when_free, args=(port,), name="prism-progress-bind",
                                 daemon=True).start()

    def _bind_when_free(self, port: int) -> None:
        delay = self.RETRY_FIRST_S
        while not self._stopped.wait(delay):
            try:
                server = serve(self.state, port)
            except OSError:
                delay = min(delay * 2, self.RETRY_MAX_S)
                continue
            if self._stopped.is_set():
                _close(server)
            else:
                self.server, self.error = server, None
            return

    def port(self) -> int | None:
        server = self.server
        return server.server_address[1] if server else None

    def serve_error(self) -> str | None:
        return self.error

    def add(self, counts: Counts, failures: list[FailedFile] = ()) -> None:
        self.state.add(counts, failures)

    def listed(self, files_total: int, complete: bool) -> None:
        """The listing so far: files_total grows page by page; complete once it reached the end."""
        self.state.listed(files_total, complete)

    def finish(self, totals: Counts, failures: list[FailedFile], outcome: str | None = None,
               message: str = "") -> None:
        self.state.finish(totals, failures, outcome, message)

    def set_outcome(self, outcome: str, message: str = "") -> None:
        self.state.set_outcome(outcome, message)

    def snapshot(self) -> ProgressReport:
        return self.state.snapshot()

    def stop(self) -> None:
        self._stopped.set()
        if self.server:
            _close(self.server)


def _close(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def start_progress_actor(job: str, files_total: int, port: int | None, *, namespace: str = "", attempt: int = 1):
    """The job's progress actor, pinned to this (the driver's) node: the head's progress port is
    where the operator looks. num_cpus=0 so it fits on a zero-CPU head and never takes a worker slot."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(ProgressActor)
    actor = actor_cls.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
    ).remote(job, files_total, port, namespace, attempt)
    # One ray.get at start-up (not on the hot path): surfaces a busy port before any work starts.
    bound, error = ray.get([actor.port.remote(), actor.serve_error.remote()], timeout=60)
    if error:
        logging.getLogger("prism.progress").warning("%s; progress is only in this log until the port is free "
                                                    "(retrying)", error)
    return actor, bound
