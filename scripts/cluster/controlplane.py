#!/usr/bin/env python3
"""A real Kubernetes control plane on 127.0.0.1, from binaries built by scripts/cluster/build.sh.

    python scripts/cluster/controlplane.py up      # start (or reuse) it; prints the kubeconfig path
    python scripts/cluster/controlplane.py down    # stop it and remove its state
    python scripts/cluster/controlplane.py status  # what runs, where

What runs: etcd; kube-apiserver (RBAC, service-account tokens, OwnerReferencesPermissionEnforcement
as on OpenShift); kube-controller-manager (garbage collection, namespaces, service accounts,
endpoints); kube-scheduler; kwok (fake nodes, so pods are scheduled and become Running); KubeRay's
ray-operator; Kueue (its webhooks served on loopback, called by the API server by URL); and a
small HTTP forward proxy (`service_proxy.py`) that stands in for cluster DNS and kube-proxy: the
KubeRay controller reaches `<head-svc>.<ns>.svc.cluster.local:8265` through it, which it routes to
a real Ray head on this machine when the tests start one. Everything binds to 127.0.0.1.

State (certificates, kubeconfigs, logs, pids, etcd data) lives in $PRISM_CLUSTER_DIR
(default /tmp/prism-cluster). Ports start at $PRISM_CLUSTER_PORT_BASE (default 27300).
Stdlib and PyYAML only, so the tests can import it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _versions() -> dict[str, str]:
    out = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


VERSIONS = _versions()


def use_built_kubectl() -> None:
    """Put the kubectl that build.sh made (only when the machine has none) on PATH."""
    built = cache_dir() / "bin"
    if (built / "kubectl").exists() and str(built) not in os.environ.get("PATH", ""):
        os.environ["PATH"] = f"{built}{os.pathsep}{os.environ.get('PATH', '')}"
ADMIN_TOKEN_USER = "prism-admin"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Resources of each fake node: big enough for every test's RayCluster, GPU groups included.
FAKE_NODES = {
    "kwok-cpu-0": {"cpu": "64", "memory": "256Gi", "pods": "250"},
    "kwok-gpu-0": {"cpu": "64", "memory": "256Gi", "pods": "250", "nvidia.com/gpu": "8"},
}
# Kueue frameworks the tests use; its webhooks for other kinds are left out so that a webhook
# Kueue does not serve can never block unrelated creates.
KUEUE_FRAMEWORKS = ["ray.io/rayjob", "ray.io/raycluster"]
KUEUE_WEBHOOK_GROUPS = {"kueue.x-k8s.io", "ray.io"}


def cache_dir() -> Path:
    base = os.environ.get("PRISM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "prism")
    return Path(base) / "control-plane"


def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds a module's files (its CRDs and manifests are read from there)."""
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                         text=True, timeout=600, check=False)
    info = json.loads(out.stdout or "{}")
    if "Dir" not in info:
        raise SystemExit(f"cannot download {module}@{version}: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


@dataclass(frozen=True)
class Layout:
    root: Path
    port_base: int

    @classmethod
    def from_env(cls) -> Layout:
        return cls(Path(os.environ.get("PRISM_CLUSTER_DIR") or "/tmp/prism-cluster"),
                   int(os.environ.get("PRISM_CLUSTER_PORT_BASE") or 27300))

    def port(self, name: str) -> int:
        offsets = {"etcd": 0, "etcd-peer": 1, "apiserver": 2, "kueue-webhook": 3, "kueue-metrics": 4,
                   "kueue-health": 5, "kuberay-metrics": 6, "kuberay-probe": 7, "kwok": 8, "proxy": 9,
                   "kcm": 10, "scheduler": 11}
        return self.port_base + offsets[name]

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port('apiserver')}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port('proxy')}"

    @property
    def routes(self) -> Path:
        return self.root / "proxy-routes.json"

    def pidfile(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"


def bin_path(name: str) -> Path:
    version = {"kube-apiserver": "KUBERNETES_VERSION", "kube-controller-manager": "KUBERNETES_VERSION",
               "kube-scheduler": "KUBERNETES_VERSION", "kubectl": "KUBERNETES_VERSION", "etcd": "ETCD_VERSION",
               "kuberay-operator": "KUBERAY_VERSION", "kueue": "KUEUE_VERSION", "kwok": "KWOK_VERSION",
               "helm": "HELM_VERSION"}[name]
    path = cache_dir() / f"{name}-{VERSIONS[version]}" / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: run scripts/cluster/build.sh first (or `make cluster-up`)")
    return path


# ---- certificates and credentials -------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_credentials(lay: Layout) -> None:
    pki = lay.root / "pki"
    if (pki / "done").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3650", "-subj", "/CN=prism-test-ca", cwd=pki)
    for name, sans in (("apiserver", "IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"),
                       ("kueue-webhook", "IP:127.0.0.1,DNS:localhost")):
        (pki / f"{name}.ext").write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "3650", "-extfile", f"{name}.ext", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    (pki / "admin.token").write_text(token)
    (pki / "tokens.csv").write_text(f'{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n')
    # Kueue's webhook server reads tls.crt/tls.key from its certDir (internal cert management off).
    certs = lay.root / "kueue-certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(pki / "kueue-webhook.crt", certs / "tls.crt")
    shutil.copy(pki / "kueue-webhook.key", certs / "tls.key")
    (pki / "done").write_text("ok")


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "prism-test", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "prism-test", "context": {"cluster": "prism-test", "user": user}}],
        "current-context": "prism-test",
    }))
    path.chmod(0o600)


# ---- processes --------------------------------------------------------------------------------

def alive(lay: Layout, name: str) -> bool:
    try:
        pid = int(lay.pidfile(name).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def start(lay: Layout, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    if alive(lay, name):
        return
    lay.pidfile(name).parent.mkdir(parents=True, exist_ok=True)
    lay.log(name).parent.mkdir(parents=True, exist_ok=True)
    with lay.log(name).open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, **(env or {})}, cwd=lay.root)
    lay.pidfile(name).write_text(str(process.pid))


def stop(lay: Layout, name: str, grace: float = 10.0) -> None:
    try:
        pid = int(lay.pidfile(name).read_text())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        lay.pidfile(name).unlink(missing_ok=True)
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    lay.pidfile(name).unlink(missing_ok=True)


def wait_for(what: str, check, timeout: float, lay: Layout | None = None, log: str = "") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = f"{type(exc).__name__}: {exc}"
        if lay is not None and log and not alive(lay, log):
            break
        time.sleep(0.5)
    tail = ""
    if lay is not None and log and lay.log(log).exists():
        tail = "\n".join(lay.log(log).read_text(errors="replace").splitlines()[-25:])
    raise SystemExit(f"{what} did not come up within {timeout:.0f}s ({last})\n{tail}")


def _https_ok(lay: Layout, path: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(lay.root / "pki" / "ca.crt"))
    token = (lay.root / "pki" / "admin.token").read_text()
    req = urllib.request.Request(lay.server + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as response:
        return response.status == 200


def kubectl(lay: Layout, *args: str, input: str | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["kubectl", f"--kubeconfig={lay.kubeconfig}", *args], input=input, text=True,
                            capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def apply(lay: Layout, docs: list[dict], server_side: bool = False) -> None:
    text = yaml.safe_dump_all(docs)
    args = ["apply", "-f", "-"] + (["--server-side", "--force-conflicts"] if server_side else [])
    kubectl(lay, *args, input=text)


def wait_established(lay: Layout, crds: list[str]) -> None:
    kubectl(lay, "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{name}" for name in crds])


# ---- the components ---------------------------------------------------------------------------

def start_etcd(lay: Layout) -> None:
    client, peer = lay.port("etcd"), lay.port("etcd-peer")
    start(lay, "etcd", [str(bin_path("etcd")), "--data-dir", str(lay.root / "etcd"), "--name", "default",
                        "--listen-client-urls", f"http://127.0.0.1:{client}",
                        "--advertise-client-urls", f"http://127.0.0.1:{client}",
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                        "--listen-metrics-urls", "",
                        # Test data: losing it on a crash is fine, fsync stalls on a busy disk are not.
                        "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024**3)])

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=3) as r:
            return json.loads(r.read()).get("health") == "true"
    wait_for("etcd", healthy, 60, lay, "etcd")


def start_apiserver(lay: Layout) -> None:
    pki = lay.root / "pki"
    start(lay, "kube-apiserver", [
        str(bin_path("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{lay.port('etcd')}",
        "--bind-address=127.0.0.1", f"--secure-port={lay.port('apiserver')}",
        "--advertise-address=127.0.0.1",
        "--authorization-mode=RBAC",
        f"--token-auth-file={pki / 'tokens.csv'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--endpoint-reconciler-type=none",
        # OpenShift's default: setting blockOwnerDeletion needs `update` on the owner's finalizers.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        "--profiling=false", "--v=1",
    ])
    wait_for("kube-apiserver", lambda: _https_ok(lay, "/readyz"), 180, lay, "kube-apiserver")


def start_controllers(lay: Layout) -> None:
    pki = lay.root / "pki"
    kc = str(lay.kubeconfig)
    start(lay, "kube-controller-manager", [
        str(bin_path("kube-controller-manager")), f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", f"--secure-port={lay.port('kcm')}",
        "--leader-elect=false", f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        # No kubelets report heartbeats (kwok's nodes are fake): node lifecycle would taint them.
        "--controllers=*,-nodelifecycle,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
        "--concurrent-gc-syncs=5", "--v=1",
    ])
    start(lay, "kube-scheduler", [
        str(bin_path("kube-scheduler")), f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", f"--secure-port={lay.port('scheduler')}", "--leader-elect=false", "--v=1",
    ])
    start_kwok(lay)


def start_kwok(lay: Layout) -> None:
    stages = module_dir("sigs.k8s.io/kwok", VERSIONS["KWOK_VERSION"]) / "kustomize" / "stage"
    docs = [(stages / "node" / "fast" / "node-initialize.yaml").read_text()]
    docs += [p.read_text() for p in sorted((stages / "pod" / "fast").glob("pod-*.yaml"))]
    config = lay.root / "kwok.yaml"
    config.write_text("\n---\n".join(docs))
    start(lay, "kwok", [str(bin_path("kwok")), f"--kubeconfig={lay.kubeconfig}", f"--config={config}",
                        "--manage-all-nodes=false",
                        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                        # Documentation address ranges: pod and node IPs are only labels here, never dialled.
                        "--cidr=192.0.2.0/24", "--node-ip=198.51.100.1",
                        f"--server-address=127.0.0.1:{lay.port('kwok')}"])
    nodes = []
    for name, capacity in FAKE_NODES.items():
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
        if "nvidia.com/gpu" in capacity:
            labels["nvidia.com/gpu.present"] = "true"
        nodes.append({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": name, "labels": labels,
                                   "annotations": {"kwok.x-k8s.io/node": "fake",
                                                   "node.alpha.kubernetes.io/ttl": "0"}},
                      "spec": {}, "status": {"capacity": capacity, "allocatable": capacity}})
    apply(lay, nodes)

    def ready() -> bool:
        out = kubectl(lay, "get", "nodes", "-o", "json").stdout
        items = json.loads(out)["items"]
        return len(items) >= len(FAKE_NODES) and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions", []))
            for n in items)
    wait_for("kwok nodes Ready", ready, 90, lay, "kwok")
    # The API server taints new nodes not-ready; the node lifecycle controller (off: no kubelets)
    # would lift it once Ready.
    kubectl(lay, "taint", "nodes", "--all", "node.kubernetes.io/not-ready:NoSchedule-", check=False)


def install_kuberay(lay: Layout) -> None:
    crd_dir = module_dir("github.com/ray-project/kuberay/ray-operator", VERSIONS["KUBERAY_VERSION"]) / "config" / "crd" / "bases"
    docs = [yaml.safe_load(p.read_text()) for p in sorted(crd_dir.glob("ray.io_*.yaml"))]
    apply(lay, docs, server_side=True)  # the RayCluster CRD's last-applied annotation would be too large
    wait_established(lay, [d["metadata"]["name"] for d in docs])
    start(lay, "kuberay-operator", [
        str(bin_path("kuberay-operator")), f"--kubeconfig={lay.kubeconfig}",
        f"--metrics-addr=127.0.0.1:{lay.port('kuberay-metrics')}",
        f"--health-probe-bind-address=127.0.0.1:{lay.port('kuberay-probe')}",
        "--enable-leader-election=false", "--log-stdout-encoder=console",
    ], env={
        # The controller reaches each head's dashboard at <svc>.<ns>.svc.cluster.local:8265; the
        # forward proxy plays cluster DNS and kube-proxy for it (API server traffic is HTTPS: direct).
        "HTTP_PROXY": lay.proxy_url, "http_proxy": lay.proxy_url, "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{lay.port('kuberay-probe')}/readyz", timeout=3) as r:
            return r.status == 200
    wait_for("KubeRay operator", healthy, 120, lay, "kuberay-operator")


def install_kueue(lay: Layout) -> None:
    root = module_dir("sigs.k8s.io/kueue", VERSIONS["KUEUE_VERSION"]) / "config" / "components"
    crds = [yaml.safe_load(p.read_text()) for p in sorted((root / "crd" / "bases").glob("*.yaml"))]
    ca = base64.b64encode((lay.root / "pki" / "ca.crt").read_bytes()).decode()
    base = f"https://127.0.0.1:{lay.port('kueue-webhook')}"
    for crd in crds:  # conversion webhooks, if any, are served by the same process
        conversion = (crd.get("spec") or {}).get("conversion") or {}
        service = ((conversion.get("webhook") or {}).get("clientConfig") or {}).pop("service", None)
        if service is not None:
            conversion["webhook"]["clientConfig"].update({"url": base + (service.get("path") or "/convert"),
                                                          "caBundle": ca})
    apply(lay, crds, server_side=True)
    wait_established(lay, [d["metadata"]["name"] for d in crds])
    hooks = []
    for doc in yaml.safe_load_all((root / "webhook" / "manifests.yaml").read_text()):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups <= KUEUE_WEBHOOK_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": base + path, "caBundle": ca}
            hook["timeoutSeconds"] = 10
            kept.append(hook)
        doc["webhooks"] = kept
        doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
        hooks.append(doc)
    kubectl(lay, "create", "namespace", "kueue-system", check=False)
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{lay.port('kueue-health')}"},
        "metrics": {"bindAddress": f"127.0.0.1:{lay.port('kueue-metrics')}"},
        "webhook": {"port": lay.port("kueue-webhook"), "host": "127.0.0.1",
                    "certDir": str(lay.root / "kueue-certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": KUEUE_FRAMEWORKS},
    }
    (lay.root / "kueue-config.yaml").write_text(yaml.safe_dump(config))
    install_kueue_metrics_cert(lay)
    start(lay, "kueue", [str(bin_path("kueue")), f"--config={lay.root / 'kueue-config.yaml'}",
                         f"--kubeconfig={lay.kubeconfig}", "--zap-log-level=info",
                         # The on-demand visibility API server wants its own certificate in /visibility.
                         "--feature-gates=VisibilityOnDemand=false"])

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{lay.port('kueue-health')}/readyz", timeout=3) as r:
            return r.status == 200
    wait_for("Kueue", healthy, 180, lay, "kueue")
    apply(lay, hooks)


# Kueue v0.19 reads its metrics serving certificate from this fixed path whenever its internal
# certificate management is off (cmd/kueue/main.go); there is no flag for it.
KUEUE_METRICS_CERTS = Path("/etc/kueue/metrics/certs")


def install_kueue_metrics_cert(lay: Layout) -> None:
    pki = lay.root / "pki"
    try:
        KUEUE_METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for src, dst in (("kueue-webhook.crt", "tls.crt"), ("kueue-webhook.key", "tls.key")):
            shutil.copy(pki / src, KUEUE_METRICS_CERTS / dst)
    except OSError as exc:
        raise SystemExit(f"Kueue needs its metrics certificate in {KUEUE_METRICS_CERTS} ({exc}); run as root, "
                         "create that folder writable for this user, or start with --no-kueue") from None


def start_proxy(lay: Layout) -> None:
    if not lay.routes.exists():
        lay.routes.write_text("{}")
    start(lay, "service-proxy", [sys.executable, str(HERE / "service_proxy.py"), "--port", str(lay.port("proxy")),
                                 "--routes", str(lay.routes)])

    def healthy() -> bool:
        with urllib.request.urlopen(f"{lay.proxy_url}/healthz", timeout=3) as r:
            return r.status == 200
    wait_for("service proxy", healthy, 30, lay, "service-proxy")


COMPONENTS = ["service-proxy", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
              "kuberay-operator", "kueue"]


def up(lay: Layout, kueue: bool = True) -> Path:
    use_built_kubectl()
    lay.root.mkdir(parents=True, exist_ok=True)
    make_credentials(lay)
    token = (lay.root / "pki" / "admin.token").read_text()
    write_kubeconfig(lay.kubeconfig, lay.server, lay.root / "pki" / "ca.crt", token, ADMIN_TOKEN_USER)
    start_proxy(lay)
    start_etcd(lay)
    start_apiserver(lay)
    start_controllers(lay)
    install_kuberay(lay)
    if kueue:
        install_kueue(lay)
    (lay.root / "env").write_text(f"export KUBECONFIG={lay.kubeconfig}\n")
    return lay.kubeconfig


def down(lay: Layout) -> None:
    for name in reversed(COMPONENTS):
        stop(lay, name)
    shutil.rmtree(lay.root, ignore_errors=True)


def status(lay: Layout) -> dict[str, bool]:
    return {name: alive(lay, name) for name in COMPONENTS}


def service_account_kubeconfig(lay: Layout, namespace: str, name: str, path: Path, hours: int = 24) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a bound token from the TokenRequest API)."""
    token = kubectl(lay, "create", "token", name, "-n", namespace, f"--duration={hours}h").stdout.strip()
    write_kubeconfig(path, lay.server, lay.root / "pki" / "ca.crt", token, f"system:serviceaccount:{namespace}:{name}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--no-kueue", action="store_true", help="start without Kueue")
    args = parser.parse_args(argv)
    lay = Layout.from_env()
    if args.command == "up":
        started = time.monotonic()
        kubeconfig = up(lay, kueue=not args.no_kueue)
        print(f"control plane up in {time.monotonic() - started:.0f}s; logs in {lay.root / 'logs'}", file=sys.stderr)
        print(kubeconfig)
    elif args.command == "down":
        down(lay)
    else:
        for name, running in status(lay).items():
            print(f"{name:26} {'running' if running else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
