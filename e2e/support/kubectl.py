"""kubectl, driven as a user would drive it: every call has a request timeout and a process timeout.

The suite uses the CLI rather than a client library on purpose: `kubectl get xj` is the interface
the issue asks about, and a failing command's stderr is the best diagnostic there is.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

REQUEST_TIMEOUT = "30s"
PROCESS_TIMEOUT_SECONDS = 90


class KubectlError(RuntimeError):
    pass


@dataclass
class Kubectl:
    kubeconfig: str
    namespace: str | None = None
    binary: str = "kubectl"
    log: list[str] = field(default_factory=list)

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.kubeconfig, namespace, self.binary, self.log)

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        argv = [self.binary, "--kubeconfig", self.kubeconfig, f"--request-timeout={REQUEST_TIMEOUT}"]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        return argv + list(args)

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = PROCESS_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
        argv = self._argv(args)
        self.log.append(" ".join(argv))
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
        if check and proc.returncode != 0:
            raise KubectlError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str) -> dict | None:
        """The object, or None when it does not exist."""
        proc = self.run("get", kind, name, "-o", "json", check=False)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise KubectlError(f"kubectl get {kind} {name} failed: {proc.stderr.strip()}")

    def list(self, kind: str, selector: str | None = None) -> list[dict]:
        args = ["get", kind]
        if selector:
            args += ["-l", selector]
        return self.json(*args).get("items", [])

    def apply(self, obj: dict) -> None:
        self.run("apply", "-f", "-", stdin=json.dumps(obj))

    def merge_patch(self, kind: str, name: str, patch: dict) -> None:
        self.run("patch", kind, name, "--type=merge", "-p", json.dumps(patch))

    def delete(self, kind: str, name: str) -> None:
        """Request deletion and return at once; callers wait for it with a deadline."""
        self.run("delete", kind, name, "--ignore-not-found", "--wait=false")

    def table(self, kind: str, name: str) -> dict[str, str]:
        """`kubectl get KIND NAME` as a user sees it: printer column name -> cell text."""
        return parse_table(self.run("get", kind, name).stdout)[0]


def parse_table(text: str) -> list[dict[str, str]]:
    """Parse kubectl's default table output by the header's column offsets (cells may be empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    names = header.split()
    starts: list[int] = []
    position = 0
    for name in names:
        position = header.index(name, position)
        starts.append(position)
        position += len(name)
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(names) else None
            cells[name] = line[starts[i]:end].strip()
        rows.append(cells)
    return rows
