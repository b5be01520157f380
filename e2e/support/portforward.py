"""`kubectl port-forward` to a Service, on a free local port, started and stopped with deadlines.

A forward dies with the pod behind it; `url()` restarts a dead one, so a long session survives a
Qdrant or MinIO restart.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

from .kubectl import Kubectl

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


class PortForwardError(RuntimeError):
    pass


class PortForward:
    def __init__(self, kubectl: Kubectl, namespace: str, service: str, port: int):
        self.kubectl = kubectl.in_namespace(namespace)
        self.target = f"svc/{service}"
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.local_port: int | None = None

    def url(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return f"http://127.0.0.1:{self.local_port}"

    def start(self) -> None:
        self.stop()
        argv = self.kubectl._argv(("port-forward", self.target, f":{self.port}", "--address", "127.0.0.1"))
        print(f"starting: {' '.join(argv)}", flush=True)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc, lines), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line.rstrip())
            match = _FORWARDING.search(line)
            if match:
                self.local_port = int(match.group(1))
                return
        self.stop()
        raise PortForwardError(f"port-forward to {self.kubectl.namespace}/{self.target}:{self.port} did not "
                               f"start within {START_TIMEOUT_SECONDS:.0f}s; output: {' | '.join(seen) or 'none'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.proc = None

    def __enter__(self) -> PortForward:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _pump(proc: subprocess.Popen, lines: queue.Queue) -> None:
    """Keep reading the forward's output, so its pipe never fills up and blocks it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
