"""The e2e suite's options and shared fixtures.

Nothing here runs without a cluster: every test is skipped unless `--kubeconfig PATH` (a cluster
with the stack installed, e.g. by `e2e/run.sh --setup-only`) or `--kind` (the suite creates a kind
cluster with e2e/run.sh and deletes it afterwards) is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.support.jobs import Jobs
from e2e.support.kubectl import Kubectl, KubectlError
from e2e.support.minio import root_credentials, upload_media
from e2e.support.portforward import PortForward
from e2e.support.qdrant import QdrantHTTP

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "e2e" / "run.sh"
MEDIA = ROOT / "examples" / "media"
# Creating the cluster, building both images and installing the stack: generous, but bounded.
SETUP_TIMEOUT_SECONDS = 3600
KUBECONFIG_KEY = pytest.StashKey[str]()
SKIP_REASON = ("needs a Kubernetes cluster: pass --kind (create one with kind) or --kubeconfig PATH "
               "(see e2e/README.md)")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prism-e2e", "Prism end-to-end suite (e2e/README.md)")
    group.addoption("--kubeconfig", default=os.environ.get("PRISM_E2E_KUBECONFIG"),
                    help="run against the cluster of this kubeconfig (its stack installed by "
                         "`e2e/run.sh --kubeconfig PATH --setup-only ...`); env PRISM_E2E_KUBECONFIG")
    group.addoption("--kind", action="store_true",
                    help="create a kind cluster with e2e/run.sh (images, KubeRay, Qdrant, MinIO, Prism) first")
    group.addoption("--keep-cluster", action="store_true", help="with --kind: keep the cluster afterwards")
    group.addoption("--job-image", default="prism-worker-e2e:e2e",
                    help="image of the jobs' Ray pods (spec.cluster.image); e2e/run.sh builds it")
    group.addoption("--e2e-namespace", default="prism-e2e", help="namespace the ExtractionJobs run in")
    group.addoption("--operator-namespace", default="prism-system", help="namespace of the Prism operator")
    group.addoption("--operator-deployment", default="prism-operator", help="the Prism operator's Deployment")
    group.addoption("--keep-jobs", action="store_true", help="leave the ExtractionJobs behind for inspection")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kubeconfig") or config.getoption("--kind"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def _kind_setup(config: pytest.Config) -> str:
    """Run e2e/run.sh to create the kind cluster and install the stack; return its kubeconfig."""
    for tool in ("kind", "helm", "kubectl"):
        if shutil.which(tool) is None:
            pytest.exit(f"--kind needs '{tool}' on PATH (see e2e/README.md, Prerequisites)", returncode=2)
    workdir = os.environ.get("PRISM_E2E_WORKDIR") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "prism-e2e")
    argv = ["bash", str(RUN_SH), "--kind", "--setup-only", "--keep", "--job-image",
            config.getoption("--job-image")]
    print(f"\n{' '.join(argv)}", flush=True)
    try:
        subprocess.run(argv, check=True, timeout=SETUP_TIMEOUT_SECONDS, stdout=sys.stdout, stderr=sys.stderr)
    except subprocess.TimeoutExpired:
        pytest.exit(f"e2e/run.sh --kind --setup-only did not finish within {SETUP_TIMEOUT_SECONDS}s", returncode=2)
    except subprocess.CalledProcessError as exc:
        pytest.exit(f"e2e/run.sh --kind --setup-only failed ({exc.returncode}); its output is above", returncode=2)
    return os.path.join(workdir, "kubeconfig")


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> str:
    config = request.config
    path = config.getoption("--kubeconfig")
    if config.getoption("--kind") and not path:
        path = _kind_setup(config)
        if not config.getoption("--keep-cluster"):
            name = os.environ.get("PRISM_E2E_CLUSTER", "prism-e2e")
            request.addfinalizer(lambda: subprocess.run(["kind", "delete", "cluster", "--name", name],
                                                        timeout=300, check=False))
    if not path or not os.path.isfile(path):
        pytest.exit(f"--kubeconfig {path!r}: no such file", returncode=2)
    config.stash[KUBECONFIG_KEY] = path
    return path


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str, request: pytest.FixtureRequest) -> Kubectl:
    """kubectl in the e2e namespace, after checking that the stack is there."""
    kc = Kubectl(kubeconfig)
    missing = []
    try:
        for crd in ("extractionjobs.prism.dev", "rayclusters.ray.io", "rayjobs.ray.io"):
            if kc.get("crd", crd) is None:
                missing.append(f"CRD {crd}")
    except KubectlError as exc:
        pytest.exit(f"cannot reach the cluster of {kubeconfig}: {exc}", returncode=2)
    checks = [
        (request.config.getoption("--operator-namespace"), "deployment",
         request.config.getoption("--operator-deployment")),
        ("minio", "service", "minio"),
        ("qdrant", "service", "qdrant"),
        (request.config.getoption("--e2e-namespace"), "secret", "s3-creds"),
    ]
    for namespace, kind, name in checks:
        try:
            found = kc.in_namespace(namespace).get(kind, name)
        except KubectlError:
            found = None
        if found is None:
            missing.append(f"{kind} {namespace}/{name}")
    if missing:
        pytest.exit("the cluster lacks the e2e stack (" + ", ".join(missing) + "); install it with "
                    f"`e2e/run.sh --kubeconfig {kubeconfig} --setup-only ...` (see e2e/README.md)", returncode=2)
    return kc.in_namespace(request.config.getoption("--e2e-namespace"))


@pytest.fixture(scope="session")
def media_uris(kubectl: Kubectl) -> list[str]:
    """examples/media uploaded to MinIO's `media` bucket (emptied first): the s3:// URI of every file."""
    with PortForward(kubectl, "minio", "minio", 9000) as forward:
        uris = upload_media(forward.url(), root_credentials(kubectl), MEDIA)
    assert uris, f"no sample media under {MEDIA}: run examples/make_media.py"
    return uris


@pytest.fixture(scope="session")
def qdrant(kubectl: Kubectl):
    forward = PortForward(kubectl, "qdrant", "qdrant", 6333)
    yield QdrantHTTP(forward.url)
    forward.stop()


@pytest.fixture
def jobs(kubectl: Kubectl, media_uris: list[str], qdrant: QdrantHTTP, request: pytest.FixtureRequest):
    runner = Jobs(kubectl, request.config.getoption("--job-image"), qdrant,
                  keep=request.config.getoption("--keep-jobs"))
    yield runner
    runner.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed e2e test, attach what a person would look at first: objects, events, operator logs."""
    outcome = yield
    report = outcome.get_result()
    path = item.config.stash.get(KUBECONFIG_KEY, None)
    if report.when != "call" or not report.failed or not path:
        return
    kc = Kubectl(path)
    namespace = item.config.getoption("--e2e-namespace")
    operator = Kubectl(path, item.config.getoption("--operator-namespace"))
    sections = [
        ("objects", kc.in_namespace(namespace), ("get", "extractionjobs,rayclusters,rayjobs,pods", "-o", "wide")),
        ("events", kc.in_namespace(namespace), ("get", "events", "--sort-by=.lastTimestamp")),
        ("operator logs", operator,
         ("logs", f"deployment/{item.config.getoption('--operator-deployment')}", "--tail=150")),
    ]
    for title, client, args in sections:
        try:
            proc = client.run(*args, check=False, timeout=60)
            text = proc.stdout + proc.stderr
        except KubectlError as exc:
            text = str(exc)
        report.sections.append((f"cluster: {title}", text[-20_000:]))
