"""The cluster tier: a real kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok,
KubeRay's controller and Kueue (scripts/cluster/controlplane.py), with `manifests/` applied and
the real `prism operator` process running as its ServiceAccount. See tests/cluster/README.md.

The control plane is started once per session (or reused when `make cluster-up` already started
it) and every test works in a namespace of its own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.support.kubectl import Kubectl
from e2e.support.waiting import wait_for
from prism_api.progress_report import PROGRESS_PORT

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OPERATOR_NAMESPACE = "prism-system"
OPERATOR_SA = "prism-operator"


def _load_controlplane():
    spec = importlib.util.spec_from_file_location("prism_controlplane", REPO / "scripts" / "cluster" / "controlplane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prism_controlplane"] = module
    spec.loader.exec_module(module)
    return module


cp = _load_controlplane()
cp.use_built_kubectl()


def pytest_collection_modifyitems(config, items):
    """Without the binaries the tier cannot run: skip it, unless PRISM_CLUSTER_TIER=require (CI, `make
    test`), where a missing binary is an error."""
    here = Path(__file__).parent
    mine = [i for i in items if Path(str(i.fspath)).is_relative_to(here)]
    if not mine:
        return
    missing = subprocess.run([str(REPO / "scripts" / "cluster" / "build.sh"), "--check"], capture_output=True,
                             text=True, check=False)
    if missing.returncode == 0 or os.environ.get("PRISM_CLUSTER_TIER") == "require":
        return
    reason = ("control-plane binaries not built (run scripts/cluster/build.sh, ~35 min cold): "
              + missing.stderr.strip().replace("\n", "; "))
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def control_plane() -> Iterator:
    lay = cp.Layout.from_env()
    already = lay.kubeconfig.exists() and all(cp.status(lay).values())
    if not already:
        cp.down(lay)  # a half-started or stale one from an earlier run
        cp.up(lay)
    apply_manifests(lay)
    yield lay
    if not already and os.environ.get("PRISM_CLUSTER_KEEP") != "1":
        cp.down(lay)


def apply_manifests(lay) -> None:
    """What a platform team applies: the CRD, the namespace and the RBAC (not the Deployment: the
    operator runs here as a process, under the Deployment's ServiceAccount)."""
    kubectl = Kubectl(str(lay.kubeconfig))
    for path in ["manifests/namespace.yaml", "manifests/crd/extractionjob.yaml", "manifests/crd/extractioncronjob.yaml",
                 "manifests/crd/searchservice.yaml", "manifests/rbac/serviceaccount.yaml", "manifests/rbac/clusterrole.yaml",
                 "manifests/rbac/clusterrolebinding.yaml"]:
        text = (REPO / path).read_text()
        if "serviceaccount" in path:
            kubectl.run("apply", "-n", OPERATOR_NAMESPACE, "-f", "-", stdin=text)
        else:
            kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd/extractionjobs.prism.dev",
                "crd/extractioncronjobs.prism.dev", "crd/searchservices.prism.dev")
    # Established is not served: for a moment after a CRD is created or changed the API server answers
    # its lists with 429 "storage is (re)initializing", which kopf logs as an ERROR while it retries.
    wait_for("the CRDs' storage", lambda: kubectl.run("get", "extractionjobs,extractioncronjobs,searchservices", "-A",
                                                      check=False).returncode == 0, 60, interval=0.5)


@pytest.fixture(scope="session")
def admin(control_plane) -> Kubectl:
    return Kubectl(str(control_plane.kubeconfig))


@pytest.fixture
def namespace(admin: Kubectl, request) -> Iterator[str]:
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    admin.run("create", "namespace", name)
    yield name
    # Jobs no operator ever saw carry no finalizer and go at once; then the namespace.
    admin.run("delete", "searchservices,extractioncronjobs,extractionjobs", "--all", "-n", name, "--timeout=30s",
              check=False)
    admin.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(admin: Kubectl, namespace: str) -> Kubectl:
    return admin.in_namespace(namespace)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """The real `prism operator`, as the prism-operator ServiceAccount (RBAC applies to every call)."""

    ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)")

    def __init__(self, lay, workdir: Path, extra_env: dict[str, str] | None = None):
        self.lay = lay
        self.log_path = workdir / f"operator-{uuid.uuid4().hex[:6]}.log"
        self.kubeconfig = cp.service_account_kubeconfig(lay, OPERATOR_NAMESPACE, OPERATOR_SA,
                                                        workdir / "operator.kubeconfig")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
            "KUBECONFIG": str(self.kubeconfig),
            "PRISM_TIMER_INTERVAL": "1",
            "PRISM_CRON_INTERVAL": "1",
            "PRISM_RETRY_BACKOFF": "1",
            "PYTHONUNBUFFERED": "1",
            "PRISM_METRICS_PORT": str(free_port()),
            "PRISM_METRICS_HOST": "127.0.0.1",
            # Service names resolve through the control plane's proxy (cluster DNS stand-in).
            "HTTP_PROXY": lay.proxy_url, "http_proxy": lay.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([str(BIN / "prism"), "operator", "--liveness", self.liveness],
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def error_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if self.ERROR_LINE.search(line)]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def operator(control_plane, admin, namespace, tmp_path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane, tmp_path).start()
    yield process
    # The test's jobs go while their operator runs (its finalizer stops their Ray jobs), before the
    # namespace is deleted: a job reconciled inside a terminating namespace cannot post Events.
    admin.run("delete", "searchservices,extractioncronjobs,extractionjobs", "--all", "-n", namespace, "--timeout=60s",
              check=False)
    process.stop()
    errors = process.error_lines()
    assert not errors, "the operator logged errors:\n" + "\n".join(errors[:20])


# ---- a real Ray head, the one every RayCluster's head service resolves to ------------------------

class RayHead:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.dashboard_port = free_port()
        self.gcs_port = free_port()
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "RAY_USAGE_STATS_ENABLED": "0",
                    # Ray 2.60 turns token authentication on when a token exists (a local ray.init()
                    # writes one under ~/.ray): KubeRay's dashboard client would then get 401. Heads
                    # that KubeRay starts have it off unless the RayCluster sets spec.authOptions.
                    "RAY_AUTH_MODE": "disabled",
                    "PYTHONPATH": os.pathsep.join([str(REPO / "e2e" / "plugins"),
                                                   os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        for key in ("HTTP_PROXY", "http_proxy", "RAY_ADDRESS"):
            self.env.pop(key, None)

    def start(self) -> RayHead:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={self.gcs_port}",
                        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard_port}",
                        # Logical CPUs, as `prism run` sizes its local Ray: every stage's actors fit at once.
                        "--num-cpus=8", '--resources={"batch": 8}',
                        f"--temp-dir={self.workdir / 'ray'}", "--disable-usage-stats"],
                       env=self.env, check=True, capture_output=True, timeout=180)
        return self

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def job(self, submission_id: str) -> dict | None:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/jobs/{submission_id}", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def logs(self, submission_id: str) -> str:
        import urllib.request
        with urllib.request.urlopen(f"{self.dashboard}/api/jobs/{submission_id}/logs", timeout=10) as r:
            return json.loads(r.read()).get("logs", "")

    def live_jobs(self) -> list[str]:
        import urllib.request
        with contextlib.suppress(Exception), urllib.request.urlopen(f"{self.dashboard}/api/jobs/", timeout=5) as r:
            return [j["submission_id"] for j in json.loads(r.read()) if j.get("status") in ("PENDING", "RUNNING")]
        return []

    def stop_all(self, timeout: float = 60) -> None:
        """Stop every Ray job a test left running and wait until they have ended: the next test's
        driver needs the head's CPUs and its progress port."""
        import urllib.request
        for submission in self.live_jobs():
            req = urllib.request.Request(f"{self.dashboard}/api/jobs/{submission}/stop", method="POST")
            with contextlib.suppress(Exception):
                urllib.request.urlopen(req, timeout=5).close()
        left = wait_for("the Ray jobs a test left to end", lambda: self.live_jobs() == [], timeout, interval=1)
        assert left, self.live_jobs()

    def shutdown(self) -> None:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=self.env, capture_output=True, timeout=120,
                       check=False)


@pytest.fixture(scope="session")
def ray_head(control_plane, tmp_path_factory) -> Iterator[RayHead]:
    # Ray's socket paths must stay under 107 bytes: a short folder, not pytest's tmp_path.
    head = RayHead(Path(tempfile.mkdtemp(prefix="prism-ray-", dir="/tmp"))).start()
    routes = {"*:8265": f"127.0.0.1:{head.dashboard_port}",
              f"*:{PROGRESS_PORT}": f"127.0.0.1:{PROGRESS_PORT}"}
    control_plane.routes.write_text(json.dumps(routes))
    yield head
    control_plane.routes.write_text("{}")
    head.shutdown()
    shutil.rmtree(head.workdir, ignore_errors=True)


@pytest.fixture
def ray(ray_head) -> Iterator[RayHead]:
    """The session's Ray head, with every Ray job a test left running stopped afterwards."""
    yield ray_head
    ray_head.stop_all()



# ---- jobs ----------------------------------------------------------------------------------------

def job_manifest(name: str, namespace: str, *, media: Path | None = None, qdrant_url: str = "http://127.0.0.1:1",
                 extractors: list[dict] | None = None, labels: dict | None = None, **spec: object) -> dict:
    """An ExtractionJob over a local folder (file:// — the driver runs on this machine) into a Qdrant URL."""
    body = {
        "source": {"uri": f"file://{media}" if media else "file:///nonexistent-media"},
        "extractors": extractors or [{"name": "text", "kind": "text-embedding", "batchSize": 8}],
        "sink": {"qdrant": {"url": qdrant_url, "collection": name}},
        "cluster": {"head": {"cpu": "1", "memory": "2Gi"},
                    "workerGroups": [{"name": "cpu", "cpu": "2", "memory": "4Gi", "minReplicas": 1, "maxReplicas": 2}]},
        **spec,
    }
    meta = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": meta, "spec": body}


def apply_job(kubectl: Kubectl, manifest: dict) -> dict:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    return kubectl.get("extractionjob", manifest["metadata"]["name"])


def job_status(kubectl: Kubectl, name: str) -> dict:
    obj = kubectl.get("extractionjob", name) or {}
    return obj.get("status") or {}


def wait_phase(kubectl: Kubectl, name: str, phases: set[str] | str, timeout: float = 120) -> dict:
    wanted = {phases} if isinstance(phases, str) else phases
    return wait_for(f"ExtractionJob {name} in {sorted(wanted)}",
                    lambda: s if (s := job_status(kubectl, name)).get("phase") in wanted else None,
                    timeout, interval=1.0,
                    describe=lambda: json.dumps({k: v for k, v in job_status(kubectl, name).items()
                                                 if k in ("phase", "reason", "message", "attempt")}))


def children(kubectl: Kubectl, kind: str) -> list[dict]:
    return kubectl.json("get", kind, "-l", "app.kubernetes.io/managed-by=prism-operator").get("items", [])


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def events(kubectl: Kubectl, name: str) -> list[dict]:
    items = kubectl.json("get", "events", "--field-selector", f"involvedObject.name={name}").get("items", [])
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A few small text files: enough for a real pipeline run of a few seconds."""
    root = tmp_path_factory.mktemp("media")
    for i in range(4):
        (root / f"note-{i}.txt").write_text(f"Note {i}: the planets orbit the sun; comet {i} returns.\n" * 3)
    return root


@pytest.fixture(scope="session")
def qdrant():
    from tests.pipeline.qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    yield server
    server.close()


def has_binary(name: str) -> bool:
    return shutil.which(name) is not None
