"""The worker image's Dockerfile agrees with the rest of the project: the Ray base image matches
the pinned Ray and the spec's default rayVersion, torch is the project's pin, the image runs as
a non-root user, and the e2e overlay puts the plug-ins on the path."""

from __future__ import annotations

import re

from prism_api import Cluster
from prism_api.search_service import ServeCluster

from .repo_files import ROOT

WORKER = ROOT / "worker_image" / "Dockerfile"
E2E_WORKER = ROOT / "e2e" / "worker" / "Dockerfile"


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_worker_base_images_match_the_ray_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    ray = re.search(r'"ray\[[a-z,]*\]==([0-9.]+)"', pyproject).group(1)
    assert Cluster().ray_version == ray, "spec.cluster.rayVersion's default and the pinned Ray differ"
    assert ServeCluster().ray_version == ray, "a SearchService's spec.cluster.rayVersion default and the pinned Ray differ"
    bases = [args.split()[0] for word, args in instructions(WORKER) if word == "FROM"]
    pinned = [b for b in bases if b.startswith("rayproject/ray:")]
    assert pinned, bases
    for base in pinned:
        assert base.startswith(f"rayproject/ray:{ray}-py311"), f"{base} is not Ray {ray}"
    assert any(b.endswith("-gpu") for b in pinned), "no CUDA variant"


def test_worker_installs_the_pinned_torch_and_the_worker_extra():
    pyproject = (ROOT / "pyproject.toml").read_text()
    torch = re.search(r'"torch==([0-9.]+)"', pyproject).group(1)
    runs = " ".join(args for word, args in instructions(WORKER) if word == "RUN")
    assert f"torch=={torch}" in runs
    assert "download.pytorch.org/whl/cpu" in runs, "the CPU variant must not pull CUDA wheels"
    assert '".[worker]"' in runs or ".[worker]" in runs


def test_worker_runs_as_non_root():
    users = [args for word, args in instructions(WORKER) if word == "USER"]
    assert users and users[-1] not in ("root", "0"), users


def test_e2e_overlay_builds_on_the_worker_and_adds_the_plugins():
    steps = instructions(E2E_WORKER)
    assert ("FROM", "${BASE_IMAGE}") in steps
    assert any(word == "COPY" and "plugins/prism_e2e" in args for word, args in steps)
    assert ("ENV", "PYTHONPATH=/opt/prism-e2e") in steps
    assert not any(word == "USER" for word, _ in steps), "the overlay keeps the base image's non-root user"
