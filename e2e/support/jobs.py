"""ExtractionJobs in the e2e namespace: apply a manifest from e2e/manifests, follow its status, find
its children (by the names in its status, or by label), and delete it with a deadline."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from prism_api.conventions import JOB_LABEL, files_collection

from .kubectl import Kubectl
from .qdrant import QdrantHTTP
from .waiting import wait_for

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
TERMINAL = ("Succeeded", "Failed")
CLUSTER_LABEL = "ray.io/cluster"  # KubeRay labels every pod of a RayCluster with it


def load_manifest(relpath: str) -> dict:
    return yaml.safe_load((MANIFESTS / relpath).read_text())


def summary(obj: dict | None) -> str:
    """One line of an ExtractionJob's status, for progress and failure messages."""
    if obj is None:
        return "<not found>"
    st = obj.get("status") or {}
    progress = st.get("progress") or {}
    conditions = ", ".join(f"{c.get('type')}={c.get('status')}({c.get('reason', '')})"
                           for c in st.get("conditions") or [])
    return (f"phase={st.get('phase')} reason={st.get('reason')} attempt={st.get('attempt')} "
            f"progress={progress.get('percent')}% files={progress.get('filesDone')}/{progress.get('filesTotal')} "
            f"failed={progress.get('filesFailed')} points={progress.get('pointsWritten')} "
            f"rayCluster={st.get('rayCluster')} rayJob={st.get('rayJob')} message={st.get('message')!r} "
            f"conditions=[{conditions}]")


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


class Jobs:
    def __init__(self, kubectl: Kubectl, image: str, qdrant: QdrantHTTP, keep: bool = False):
        self.kubectl = kubectl
        self.image = image
        self.qdrant = qdrant
        self.keep = keep
        self.applied: list[str] = []

    def apply(self, relpath: str) -> str:
        """Apply e2e/manifests/<relpath> with the suite's job image. A leftover of a former run goes
        first, with its Qdrant collections (points and the incremental file records), so every run
        starts from nothing."""
        obj = copy.deepcopy(load_manifest(relpath))
        obj["metadata"]["namespace"] = self.kubectl.namespace
        obj["spec"].setdefault("cluster", {})["image"] = self.image
        name = obj["metadata"]["name"]
        if self.get(name) is not None:
            self.delete_and_wait(name)
        collection = obj["spec"]["sink"]["qdrant"]["collection"]
        for stale in (collection, files_collection(collection)):
            self.qdrant.delete_collection(stale)
        self.kubectl.apply(obj)
        self.applied.append(name)
        return name

    def get(self, name: str) -> dict | None:
        return self.kubectl.get("extractionjob", name)

    def status(self, name: str) -> dict:
        obj = self.get(name)
        assert obj is not None, f"ExtractionJob {name} is gone"
        return obj.get("status") or {}

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float, on_poll=None) -> dict:
        """Wait until the job's phase is one of `phases`; fail at once on another terminal phase."""

        def check():
            obj = self.get(name)
            if on_poll is not None:
                on_poll(obj)
            phase = ((obj or {}).get("status") or {}).get("phase")
            if phase in phases:
                return obj
            if phase in TERMINAL:
                raise AssertionError(f"ExtractionJob {name} ended {phase} while waiting for {'/'.join(phases)}: "
                                     f"{summary(obj)}")
            return None

        return wait_for(f"ExtractionJob {name} to be {'/'.join(phases)}", check, timeout,
                        describe=lambda: summary(self.get(name)))

    def ray_cluster(self, name: str) -> dict | None:
        return self.kubectl.get("raycluster", name)

    def ray_jobs(self, job: str) -> list[dict]:
        return self.kubectl.list("rayjobs", selector=f"{JOB_LABEL}={job}")

    def ray_pods(self, cluster: str) -> list[dict]:
        return self.kubectl.list("pods", selector=f"{CLUSTER_LABEL}={cluster}")

    def delete_and_wait(self, name: str, timeout: float = 300) -> None:
        self.kubectl.delete("extractionjob", name)
        wait_for(f"ExtractionJob {name} to be deleted", lambda: self.get(name) is None, timeout,
                 describe=lambda: summary(self.get(name)))

    def cleanup(self) -> None:
        """Delete what this test applied (unless --keep-jobs), so the next one has the cluster's CPUs."""
        if self.keep:
            return
        for name in reversed(self.applied):
            self.delete_and_wait(name)
