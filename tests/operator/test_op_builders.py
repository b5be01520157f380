"""The pure builders: RayCluster and RayJob from an ExtractionJob, checked field by field and against
KubeRay's CRD schemas; and `prism render`."""

from __future__ import annotations

import copy
import random
import re
import shlex
import string
from pathlib import Path

import pytest
import yaml

from prism_api import MAX_JOB_NAME_LENGTH, ExtractionJob, parse_job, parse_spec
from prism_api.conventions import ENV_QDRANT_API_KEY
from prism_api.entrypoint import EntrypointError, decode_document, job_document
from prism_api.progress_report import PROGRESS_PORT
from prism_operator.builders import build_entrypoint, build_ray_cluster, build_ray_job
from prism_operator.builders.raycluster import owned_cluster_name
from prism_operator.builders.rayjob import entrypoint_error, rayjob_name_for

from .conftest import BASE_JOB
from .kuberay_schema import pruned_fields, schema_errors, schema_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UID = "6f1c2a3e-0000-4000-8000-000000000001"


def make_job(manifest: dict | None = None, **spec_changes) -> ExtractionJob:
    body = copy.deepcopy(manifest or BASE_JOB)
    body["metadata"] = {**body["metadata"], "uid": UID, "namespace": body["metadata"].get("namespace", "media")}
    body["spec"].update(spec_changes)
    return parse_job(body, target="cluster")


def cluster_examples() -> list[dict]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            try:
                parse_job(doc, target="cluster")
            except ValueError:
                continue  # local-only examples (`prism run`)
            out.append(doc)
    return out


GPU_GROUPS = [
    {"name": "gpu", "gpus": 2, "cpu": "8", "memory": "32Gi", "minReplicas": 0, "maxReplicas": 8,
     "nodeSelector": {"nvidia.com/gpu.present": "true"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    {"name": "cpu", "cpu": 4, "memory": "16Gi", "minReplicas": 1, "maxReplicas": 20},
]


def test_head_is_zero_cpu_and_serves_progress():
    head = build_ray_cluster(make_job())["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (container,) = head["template"]["spec"]["containers"]
    assert {"name": "progress", "containerPort": PROGRESS_PORT} in container["ports"]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}


def test_worker_groups_follow_the_spec():
    rc = build_ray_cluster(make_job(cluster={"workerGroups": GPU_GROUPS, "batchResource": 3,
                                             "image": "registry.local/prism-worker:1"}))
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    gpu, cpu = rc["spec"]["workerGroupSpecs"]
    assert (gpu["groupName"], gpu["minReplicas"], gpu["maxReplicas"], gpu["replicas"]) == ("gpu", 0, 8, 0)
    assert (cpu["groupName"], cpu["minReplicas"], cpu["maxReplicas"], cpu["replicas"]) == ("cpu", 1, 20, 1)
    assert gpu["resources"] == cpu["resources"] == {"batch": "3"}
    gpu_pod, cpu_pod = gpu["template"]["spec"], cpu["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert cpu_pod["containers"][0]["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and "nodeSelector" not in cpu_pod
    assert gpu_pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    images = {c["image"] for g in rc["spec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]}
    assert images == {"registry.local/prism-worker:1"}


def test_secrets_are_passed_by_reference_only():
    rc = build_ray_cluster(make_job())
    pods = [rc["spec"]["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in rc["spec"]["workerGroupSpecs"]]
    for pod in pods:
        (container,) = pod["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert container["env"] == [{"name": ENV_QDRANT_API_KEY, "valueFrom": {
            "secretKeyRef": {"name": "qdrant", "key": "api-key"}}}]
    without = build_ray_cluster(make_job(source={"uri": "s3://media/x/"},
                                         sink={"qdrant": {"url": "http://q:6333", "collection": "c"}}))
    container = without["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "env" not in container and "envFrom" not in container


def test_labels_and_owner():
    job = make_job()
    for obj in (build_ray_cluster(job), build_ray_job(job, 1)):
        labels = obj["metadata"]["labels"]
        assert labels["prism.dev/extraction-job"] == "campaign"
        assert labels["app.kubernetes.io/managed-by"] == "prism-operator"
        assert labels["app.kubernetes.io/instance"] == "campaign"
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "name": "campaign", "uid": UID,
            "controller": True, "blockOwnerDeletion": True}]
        assert obj["metadata"]["namespace"] == "media"


def test_kueue_labels_go_on_the_raycluster_only():
    """Kueue suspends a queue-labelled RayJob forever (clusterSelector), and KubeRay then fails it
    with ValidationFailed: the queue is the RayCluster's. An autoscaled one must say it is elastic."""
    body = copy.deepcopy(BASE_JOB)
    body["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] = "high"
    job = make_job(body)
    rc, rj = build_ray_cluster(job), build_ray_job(job, 1)
    assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-batch"
    assert rc["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["metadata"]["annotations"] == {"kueue.x-k8s.io/elastic-job": "true"}
    assert not any(k.startswith("kueue.x-k8s.io/") for k in rj["metadata"]["labels"])
    assert "annotations" not in rj["metadata"]

    body["metadata"]["labels"] = {}
    plain = build_ray_cluster(make_job(body))
    assert "annotations" not in plain["metadata"]
    assert not any(k.startswith("kueue.x-k8s.io/") for k in plain["metadata"]["labels"])


def test_rayjob_runs_the_pipeline_on_its_cluster():
    job = make_job()
    rj = build_ray_job(job, 2)
    cluster = owned_cluster_name(job)
    assert rj["metadata"]["name"] == f"{cluster}-a2" == rj["spec"]["jobId"]
    assert rj["spec"]["clusterSelector"] == {"ray.io/cluster": cluster}
    assert rj["spec"]["backoffLimit"] == 0 and rj["spec"]["shutdownAfterJobFinishes"] is False
    assert rj["spec"]["submissionMode"] == "HTTPMode"
    assert "submitterConfig" not in rj["spec"] and "submitterPodTemplate" not in rj["spec"]
    assert "rayClusterSpec" not in rj["spec"]


def test_entrypoint_round_trips_through_a_shell():
    tricky = make_job(source={"uri": "s3://media/it's here/", "include": ["**/*.mp4", "it's $(rm -rf) `x`"]})
    entrypoint = build_entrypoint(tricky, 3)
    assert build_ray_job(tricky, 3)["spec"]["entrypoint"] == entrypoint
    argv = shlex.split(entrypoint)
    assert argv[:4] == ["python", "-m", "prism_pipeline", "run"]
    assert argv[4] == "--job" and argv[6:] == ["--attempt", "3", "--progress-port", str(PROGRESS_PORT)]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", argv[5])  # base64url: nothing for a shell to act on
    document = decode_document(argv[5])
    assert document == job_document(tricky)
    assert document["metadata"] == {"name": "campaign", "namespace": "media", "uid": UID}
    assert document["apiVersion"] == "prism.dev/v1alpha1" and document["kind"] == "ExtractionJob"
    assert parse_spec(document["spec"], target="cluster") == tricky.spec


def huge_options(kib: int = 200) -> list[dict]:
    # One extractor's options are bounded (prism_api.extractor_options): the noise is spread over four.
    noise = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=kib * 1024))
    return [{"name": f"t{i}", "kind": "python: noise.plugin:Noise", "options": {"blob": noise[i::4]}}
            for i in range(4)]


def test_a_document_too_large_for_an_entrypoint_is_refused():
    job = make_job(extractors=huge_options())
    assert "entrypoint limit" in entrypoint_error(job)
    with pytest.raises(EntrypointError):
        build_ray_job(job, 1)
    assert entrypoint_error(make_job()) == ""


def test_existing_cluster():
    job = make_job(cluster={"existing": "shared"})
    with pytest.raises(ValueError, match="existing"):
        build_ray_cluster(job)
    rj = build_ray_job(job, 1)
    assert rj["spec"]["clusterSelector"] == {"ray.io/cluster": "shared"}
    # Named after the job, not the shared cluster: two jobs on one cluster never collide.
    assert rj["metadata"]["name"] == rayjob_name_for(job, 1) != "shared-a1"


@pytest.mark.parametrize("attempt", [1, 99])
def test_names_fit_kuberay(attempt):
    body = copy.deepcopy(BASE_JOB)
    body["metadata"]["name"] = "j" * MAX_JOB_NAME_LENGTH
    job = make_job(body)
    for obj in (build_ray_cluster(job), build_ray_job(job, attempt)):
        name = obj["metadata"]["name"]
        assert len(name) <= 47 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name


def test_objects_match_kuberay_schemas():
    jobs = [make_job(), make_job(cluster={"workerGroups": GPU_GROUPS}), make_job(cluster={"existing": "shared"})]
    jobs += [make_job(doc) for doc in cluster_examples()]
    assert len(jobs) >= 4
    for job in jobs:
        objects = [build_ray_job(job, 1)]
        if not job.spec.cluster.existing:
            objects.append(build_ray_cluster(job))
        for obj in objects:
            assert schema_errors(obj) == [], (job.metadata.name, obj["kind"])


def test_schema_check_catches_mistakes():
    rc = build_ray_cluster(make_job())
    rc["spec"]["workerGroupSpecs"][0]["minReplica"] = 1       # typo: KubeRay would drop it
    del rc["spec"]["workerGroupSpecs"][0]["groupName"]        # required
    rc["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "many"  # wrong type
    errors = schema_errors(rc)
    assert any("minReplica:" in e and "pruned" in e for e in errors), errors
    assert any("groupName" in e for e in errors) and any("many" in e for e in errors), errors
    assert pruned_fields(schema_for("RayJob"), {"spec": {"entrypoint": "x"}}) == []


def test_render_prints_the_children(capsys, tmp_path):
    from prism_cli.main import main

    assert main(["render", str(EXAMPLES / "gpu-video.yaml"), "--uid", UID, "-n", "media"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["RayCluster", "RayJob"]
    job = make_job(yaml.safe_load((EXAMPLES / "gpu-video.yaml").read_text()))
    assert docs == [build_ray_cluster(job), build_ray_job(job, 1)]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE_JOB, "spec": {**BASE_JOB["spec"], "retries": {"limit": -1}}}))
    assert main(["render", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: spec.retries.limit: must be >= 0" in err

    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump({**BASE_JOB, "spec": {**BASE_JOB["spec"], "extractors": huge_options()}}))
    assert main(["render", str(huge)]) == 1
    assert "entrypoint limit" in capsys.readouterr().err
    assert main(["render", str(huge), "--attempt", "100"]) == 2


RAY_STUB = """#!{python}
# `ray job status` says "not submitted"; `ray job submit ... -- ARGS` does what Ray's CLI and job
# supervisor do: list2cmdline(ARGS) (ray/dashboard/modules/job/cli.py), then /bin/sh -c.
import subprocess, sys
args = sys.argv[1:]
if args[:2] != ["job", "submit"]:
    sys.exit(1)
sys.exit(subprocess.run(["/bin/sh", "-c", subprocess.list2cmdline(args[args.index("--") + 1:])]).returncode)
"""
DRIVER_STUB = """#!{python}
import sys
open(sys.argv[0] + ".argv", "w").write("\\0".join(sys.argv[1:]))
"""


@pytest.mark.parametrize("include", [
    ["**/*.mp4"],
    ["my folder/*.jpg", "it's", "$HOME/*", "`id`", "!x", '"quoted"', "back\\slash\\", "{a,b}", "é"],
])
def test_spec_survives_the_submitter_and_the_job_supervisor(tmp_path, include):
    """KubeRay's K8sJobMode submitter runs `bash -ce "... ray job submit ... -- <entrypoint> ..."`
    (BuildJobSubmitCommand); Ray joins the arguments and runs them with /bin/sh. The driver must get
    the document back exactly, whatever characters the spec holds."""
    import os
    import shutil
    import subprocess
    import sys

    bash = shutil.which("bash")
    if bash is None or not Path("/bin/sh").exists():
        pytest.skip("needs bash and /bin/sh to replay the submitter's shell passes")
    for name, text in (("ray", RAY_STUB), ("python", DRIVER_STUB)):
        stub = tmp_path / name
        stub.write_text(text.format(python=sys.executable))
        stub.chmod(0o755)
    job = make_job(source={"uri": "s3://media/a b/", "include": include},
                   extractors=[{"name": "t", "kind": "python: notes.plugin:Notes", "options": {"prompt": "a \"b\" $c"}}])
    address = "http://campaign-head-svc.media.svc:8265"
    command = " ".join([
        "if", "!", "ray", "job", "status", "--address", address, "sub-id", ">/dev/null", "2>&1", ";", "then",
        "ray", "job", "submit", "--address", address, "--no-wait", "--submission-id", "sub-id",
        "--", build_entrypoint(job, 2).strip(), ";", "fi", ";",
    ])
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    result = subprocess.run([bash, "-ce", "--", command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "python.argv").read_text().split("\0")
    assert argv[:3] == ["-m", "prism_pipeline", "run"]
    assert argv[5:] == ["--attempt", "2", "--progress-port", str(PROGRESS_PORT)]
    received = decode_document(argv[argv.index("--job") + 1])
    assert received["spec"] == job.spec.to_wire()
    assert parse_spec(received["spec"], target="cluster") == job.spec
