"""Live progress: one Ray actor per job, fed once per batch, serving Prometheus text.

Stages call `progress.add.remote({...})` once per batch and never wait for it (one actor takes
~8k calls/s; a per-row call or a ray.get on the hot path would throttle the pipeline). The actor
runs an HTTP server thread on the driver's node (the Ray head in a RayJob), where the operator
scrapes PROGRESS_PORT with the metric names of prism_api.progress_report. The driver's stream
is authoritative: at the end it pushes its exact totals with `finish`, and its verdict
(spec.entrypoint.Outcome) with `finish` or `set_outcome`.

Every sample carries the job's name, namespace and attempt (metrics.JOB_LABEL, NAMESPACE_LABEL,
ATTEMPT_LABEL), so a reader on a shared cluster can drop another job's or an older attempt's samples.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prism_api import MAX_FAILURE_SAMPLES
from prism_api import progress_report as m
from prism_api.entrypoint import Outcome

# Counter keys stages send; per-extractor ones are "items:<name>" and "items_failed:<name>".
COUNTERS = {
    "files_done": m.FILES_DONE, "files_failed": m.FILES_FAILED, "files_skipped": m.FILES_SKIPPED,
    "points": m.POINTS_WRITTEN, "bytes_read": m.BYTES_READ, "decodes": m.DECODES,
    "cpu_seconds": m.CPU_SECONDS, "gpu_seconds": m.GPU_SECONDS,
}


class ProgressState:
    """The counters and their Prometheus rendering; thread-safe (actor thread + HTTP thread)."""

    def __init__(self, job: str, namespace: str = "", attempt: int = 1):
        self.job = job
        self.namespace = namespace or ""
        self.attempt = int(attempt)
        self._lock = threading.Lock()
        self.counts: dict[str, float] = defaultdict(float)
        self.files_total = 0
        self.failures: list[dict[str, str]] = []
        self.finished = False
        self.outcome: str | None = None  # a spec.entrypoint.Outcome value, once the driver has decided
        self.outcome_message = ""
        self.start_time = time.time()

    def labels(self) -> dict[str, str]:
        """The labels every sample carries."""
        return {m.JOB_LABEL: self.job, m.NAMESPACE_LABEL: self.namespace, m.ATTEMPT_LABEL: str(self.attempt)}

    def add(self, counts: dict[str, float], failures: list[dict[str, str]] | None = None) -> None:
        with self._lock:
            for k, v in counts.items():
                self.counts[k] += v
            for f in failures or ():
                if len(self.failures) < MAX_FAILURE_SAMPLES:
                    self.failures.append(f)

    def finish(self, counts: dict[str, float], failures: list[dict[str, str]],
               outcome: str | None = None, message: str = "") -> None:
        with self._lock:
            self.counts.update(counts)
            self.failures = list(failures[:MAX_FAILURE_SAMPLES])
            self.finished = True
            if outcome is not None:
                self._set_outcome(outcome, message)

    def set_outcome(self, outcome: str, message: str = "") -> None:
        """Record the pipeline's verdict (an Outcome value); the last one recorded is served."""
        with self._lock:
            self._set_outcome(outcome, message)

    def _set_outcome(self, outcome: str, message: str) -> None:
        self.outcome = Outcome(outcome).value  # refuses a value outside the contract
        self.outcome_message = message

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"files_total": self.files_total, "counts": dict(self.counts),
                    "failures": list(self.failures), "finished": self.finished,
                    "outcome": self.outcome, "outcome_message": self.outcome_message,
                    "start_time": self.start_time}

    def prometheus(self) -> bytes:
        s = self.snapshot()
        lines: list[str] = []

        def family(name: str, kind: str, doc: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
            base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
            lines.append(f"# HELP {base} {doc}")
            lines.append(f"# TYPE {base} {kind}")
            for sample, labels, value in samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{sample}{{{text}}} {value:g}" if text else f"{sample} {value:g}")

        job = self.labels()
        family(m.FILES_TOTAL, "gauge", "Files listed.", [(m.FILES_TOTAL, job, s["files_total"])])
        for key, name in COUNTERS.items():
            family(name, "counter", key.replace("_", " ") + ".", [(name, job, s["counts"].get(key, 0))])
        for prefix, name in (("items:", m.ITEMS), ("items_failed:", m.ITEMS_FAILED)):
            samples = [(name, {**job, "extractor": k[len(prefix):]}, v)
                       for k, v in sorted(s["counts"].items()) if k.startswith(prefix)]
            family(name, "counter", f"Items per extractor ({prefix[:-1]}).", samples)
        family(m.FAILURE_SAMPLE, "gauge", "A failed file (at most 10).",
               [(m.FAILURE_SAMPLE, {**job, **{k: str(f.get(k, ""))[:300] for k in ("uri", "stage", "error")}}, 1)
                for f in s["failures"]])
        family(m.PIPELINE_FINISHED, "gauge", "1 once the pipeline has finished.",
               [(m.PIPELINE_FINISHED, job, 1 if s["finished"] else 0)])
        family(m.START_TIME, "gauge", "Unix time the pipeline started.", [(m.START_TIME, job, s["start_time"])])
        if s["outcome"] is not None:
            family(m.OUTCOME, "gauge", "1 for the pipeline's verdict, once it has one.",
                   [(m.OUTCOME, {**job, "outcome": s["outcome"]}, 1)])
        return ("\n".join(lines) + "\n").encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def serve(state: ProgressState, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve state.prometheus() on http://host:port/metrics from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] not in (m.PROGRESS_PATH, "/"):
                self.send_error(404)
                return
            body = state.prometheus()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
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

    def __init__(self, job: str, files_total: int, port: int | None, namespace: str = "", attempt: int = 1):
        self.state = ProgressState(job, namespace, attempt)
        self.state.files_total = files_total
        self.server, self.error = None, None
        if port is not None:
            try:
                self.server = serve(self.state, port)
            except OSError as err:
                # Another job's driver on this node (a shared `cluster.existing`) holds the port: run
                # without the endpoint rather than fail the job; the driver logs the reason.
                self.error = f"cannot serve progress on port {port}: {err.strerror or err}"

    def port(self) -> int | None:
        return self.server.server_address[1] if self.server else None

    def serve_error(self) -> str | None:
        return self.error

    def add(self, counts: dict[str, float], failures: list[dict[str, str]] | None = None) -> None:
        self.state.add(counts, failures)

    def finish(self, counts: dict[str, float], failures: list[dict[str, str]],
               outcome: str | None = None, message: str = "") -> None:
        self.state.finish(counts, failures, outcome, message)

    def set_outcome(self, outcome: str, message: str = "") -> None:
        self.state.set_outcome(outcome, message)

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


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
        logging.getLogger("prism.progress").warning("%s; progress is only in this log", error)
    return actor, bound
