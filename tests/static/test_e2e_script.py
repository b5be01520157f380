"""e2e/run.sh without a cluster: its --dry-run prints every command in order, its options fail
clearly, everything it installs is pinned, and every shell script passes shellcheck."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from .repo_files import ROOT, rel, repo_files

RUN_SH = ROOT / "e2e" / "run.sh"
VERSIONS = ROOT / "e2e" / "versions.env"


def versions() -> dict[str, str]:
    pairs = re.findall(r'^([A-Z_]+)="([^"]*)"$', VERSIONS.read_text(), flags=re.M)
    return dict(pairs)


def dry_run(tmp_path, *args: str, expect_rc: int = 0) -> list[str]:
    env = {**os.environ, "PRISM_E2E_WORKDIR": str(tmp_path / "work"), "PATH": os.environ.get("PATH", "")}
    env.pop("CONTAINER_ENGINE", None)
    proc = subprocess.run(["bash", str(RUN_SH), "--dry-run", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == expect_rc, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert not (tmp_path / "work").exists(), "--dry-run must not create anything"
    return proc.stdout.splitlines() if expect_rc == 0 else [proc.stderr]


def commands(lines: list[str]) -> list[str]:
    return [line[2:] for line in lines if line.startswith("+ ")]


def index_of(cmds: list[str], needle: str) -> int:
    for i, cmd in enumerate(cmds):
        if needle in cmd:
            return i
    pytest.fail(f"no command contains {needle!r}; commands:\n" + "\n".join(cmds))


def test_kind_dry_run_prints_the_whole_path_in_order(tmp_path):
    v = versions()
    kc = f"{tmp_path}/work/kubeconfig"
    cmds = commands(dry_run(tmp_path))
    steps = [
        f"docker build -t prism-operator:e2e -f {ROOT}/Dockerfile {ROOT}",
        f"docker build -t prism-worker:e2e -f {ROOT}/worker_image/Dockerfile {ROOT}",
        f"docker build -t prism-worker-e2e:e2e --build-arg BASE_IMAGE=prism-worker:e2e -f {ROOT}/e2e/worker/Dockerfile",
        f"kind create cluster --name prism-e2e --image {v['KIND_NODE_IMAGE']} --config {ROOT}/e2e/kind/cluster.yaml "
        f"--kubeconfig {kc}",
        "kind load docker-image prism-operator:e2e prism-worker-e2e:e2e --name prism-e2e",
        f"helm --kubeconfig {kc} upgrade --install kuberay-operator kuberay-operator --repo {v['KUBERAY_CHART_REPO']} "
        f"--version {v['KUBERAY_CHART_VERSION']}",
        f"helm --kubeconfig {kc} upgrade --install qdrant qdrant --repo {v['QDRANT_CHART_REPO']} "
        f"--version {v['QDRANT_CHART_VERSION']}",
        f"kubectl --kubeconfig {kc} apply -k {ROOT}/e2e/manifests",
        f"kubectl --kubeconfig {kc} apply -k {ROOT}/manifests",
        f"kubectl --kubeconfig {kc} -n prism-system set image deployment/prism-operator '*=prism-operator:e2e'",
        f"kubectl --kubeconfig {kc} -n prism-system rollout status deployment/prism-operator --timeout=",
        f"-m pytest {ROOT}/e2e -m e2e -v -rA --kubeconfig {kc} --job-image prism-worker-e2e:e2e",
    ]
    positions = [index_of(cmds, step) for step in steps]
    assert positions == sorted(positions), "commands out of order:\n" + "\n".join(cmds)


def test_every_wait_has_a_deadline(tmp_path):
    lines = dry_run(tmp_path)
    cmds = commands(lines)
    for cmd in cmds:
        if re.search(r" (wait|rollout status) ", cmd) or " --wait" in cmd:
            has_deadline = "--timeout" in cmd or re.search(r" --wait \d+[sm]\b", cmd)
            assert has_deadline or cmd.startswith("wait up to "), f"no deadline: {cmd}"
        if cmd.startswith("wait up to "):
            assert re.match(r"wait up to \d+s for .+: ", cmd), f"a wait must say what it waits for: {cmd}"
    assert any(cmd.startswith("wait up to ") for cmd in cmds)


def test_existing_cluster_with_a_registry_pushes_and_creates_no_cluster(tmp_path):
    cmds = commands(dry_run(tmp_path, "--kubeconfig", "/clusters/kc.yaml", "--registry", "registry.example/prism"))
    assert not [c for c in cmds if c.startswith("kind ")], cmds
    index_of(cmds, "docker push registry.example/prism/prism-operator:e2e")
    index_of(cmds, "docker push registry.example/prism/prism-worker-e2e:e2e")
    index_of(cmds, "kubectl --kubeconfig /clusters/kc.yaml apply -k")
    index_of(cmds, "--kubeconfig /clusters/kc.yaml --job-image registry.example/prism/prism-worker-e2e:e2e")


def test_tests_only_runs_just_pytest(tmp_path):
    cmds = commands(dry_run(tmp_path, "--kubeconfig", "/clusters/kc.yaml", "--tests-only",
                            "--pytest-args", "-k retry -x"))
    python = ROOT / ".venv" / "bin" / "python"
    python = str(python) if os.access(python, os.X_OK) else "python3"
    assert [c for c in cmds if not c.startswith("mkdir ")] == [
        f"{python} -m pytest {ROOT}/e2e -m e2e -v -rA --kubeconfig /clusters/kc.yaml "
        "--job-image prism-worker-e2e:e2e --operator-namespace prism-system --operator-deployment prism-operator "
        "-k retry -x"
    ]


def test_podman_loads_an_image_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTAINER_ENGINE", "podman")
    env = {**os.environ, "PRISM_E2E_WORKDIR": str(tmp_path / "work")}
    out = subprocess.run(["bash", str(RUN_SH), "--dry-run"], capture_output=True, text=True, timeout=60,
                         env=env).stdout
    cmds = commands(out.splitlines())
    index_of(cmds, "podman build -t prism-operator:e2e")
    index_of(cmds, f"podman save -o {tmp_path}/work/images.tar prism-operator:e2e prism-worker-e2e:e2e")
    index_of(cmds, f"kind load image-archive {tmp_path}/work/images.tar --name prism-e2e")


@pytest.mark.parametrize("args, message", [
    (["--kubeconfig", "/clusters/kc.yaml"], "--kind-load"),
    (["--no-such-option"], "unknown option '--no-such-option'"),
    (["--setup-only", "--tests-only"], "nothing to do"),
    (["--kubeconfig"], "--kubeconfig needs a path"),
])
def test_bad_options_fail_with_a_clear_message(tmp_path, args, message):
    stderr = dry_run(tmp_path, *args, expect_rc=2)[0]
    assert message in stderr, stderr


def test_help(tmp_path):
    proc = subprocess.run(["bash", str(RUN_SH), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--kubeconfig PATH" in proc.stdout


def test_script_is_executable():
    assert os.access(RUN_SH, os.X_OK), "chmod +x e2e/run.sh"


def test_versions_are_pinned():
    v = versions()
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", v["KIND_NODE_IMAGE"]), v
    assert re.fullmatch(r"\d+\.\d+\.\d+", v["KIND_MIN_VERSION"])
    for key in ("KUBERAY_CHART_VERSION", "QDRANT_CHART_VERSION"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", v[key]), f"{key} must be an exact chart version: {v[key]}"
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.[0-9TZ-]+", v["MINIO_IMAGE"]), v["MINIO_IMAGE"]


def test_kuberay_chart_matches_the_crds_the_builders_are_checked_against():
    readme = ROOT.parent / "shared" / "kuberay-crds" / "README.md"
    if not readme.exists():
        pytest.skip(f"{readme} is absent")
    crd_minor = re.search(r"\bv(\d+\.\d+)\.\d+", readme.read_text()).group(1)
    assert versions()["KUBERAY_CHART_VERSION"].startswith(crd_minor + "."), crd_minor


def test_every_image_in_e2e_manifests_is_pinned():
    images = []
    for path in repo_files("e2e/manifests/*.yaml"):
        text = path.read_text()
        images += [(rel(path), m) for m in re.findall(r"^\s*image:\s*(\S+)", text, flags=re.M)]
    assert images
    for where, image in images:
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"
    minio = [img for _, img in images if "minio" in img]
    assert minio == [versions()["MINIO_IMAGE"]], f"e2e/manifests/minio.yaml and e2e/versions.env disagree: {minio}"


def test_operator_location_matches_the_kustomize_base():
    """run.sh and the suite patch the operator Deployment by namespace/name: they must match manifests/."""
    if not (ROOT / "manifests" / "kustomization.yaml").exists():
        pytest.skip("manifests/kustomization.yaml does not exist yet (the operator's deliverable)")
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render manifests/")
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests")], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    deployments = [(d["metadata"].get("namespace"), d["metadata"]["name"])
                   for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"]
    script = RUN_SH.read_text()
    namespace = re.search(r"PRISM_OPERATOR_NAMESPACE:-([^}]+)}", script).group(1)
    name = re.search(r"PRISM_OPERATOR_DEPLOYMENT:-([^}]+)}", script).group(1)
    assert (namespace, name) in deployments, f"run.sh assumes {namespace}/{name}; manifests/ has {deployments}"


SHELL_SCRIPTS = [p for p in repo_files("*") if p.suffix == ".sh"
                 or (p.suffix == "" and p.read_bytes()[:40].startswith(b"#!") and b"sh" in p.read_bytes()[:40])]


def test_there_are_shell_scripts():
    assert RUN_SH in SHELL_SCRIPTS


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=rel)
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package `shellcheck`: apt-get install -y shellcheck)")
    proc = subprocess.run(["shellcheck", "-x", rel(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
