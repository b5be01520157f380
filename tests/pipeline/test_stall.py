"""A stalled pipeline fails within spec.stallTimeoutSeconds with a clear message, through the RayJob
entrypoint as the operator writes it (`python -m prism_pipeline run --job ... --attempt N`), its
verdict the last line of output. It runs in its own process and Ray, so the hung actor dies with it
instead of holding a CPU of the shared test Ray."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from prism_api.entrypoint import Entrypoint
from prism_api.outcome import Outcome, OutcomeReport

from .conftest import ROOT, write_media

pytestmark = pytest.mark.slow


def test_hung_extractor_fails_the_job_with_the_stall_timeout(tmp_path):
    media = write_media(tmp_path / "media", images=0)
    job = {
        "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
        "metadata": {"name": "hangs", "namespace": "default", "uid": "0000"},
        "spec": {
            "source": {"uri": str(media)},
            "extractors": [{"name": "hang", "kind": "python: tests.pipeline.plugins:Hang"}],
            "sink": {"qdrant": {"collection": "hangs"}},
            "stallTimeoutSeconds": 10,
        },
    }
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    entrypoint = shlex.split(Entrypoint(job, attempt=2, progress_port=0).command())
    assert entrypoint[:3] == ["python", "-m", "prism_pipeline"]
    proc = subprocess.run(
        [sys.executable, *entrypoint[1:], "--linger-seconds", "0", "--no-progress-bar",
         "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "job hangs failed: pipeline stalled" in proc.stderr
    assert "stallTimeoutSeconds=10" in proc.stderr
    report = OutcomeReport.from_text(proc.stdout.rstrip("\n").rsplit("\n", 1)[-1])  # the last line
    assert report is not None and report.outcome is Outcome.FAILED, proc.stdout[-2000:]
    assert "pipeline stalled" in report.message


def test_invalid_spec_exits_2_naming_the_field(tmp_path):
    bad = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": "bad"},
           "spec": {"source": {"uri": str(tmp_path)},
                    "extractors": [{"name": "x", "kind": "text-embedding", "concurrency": {"min": 0}}],
                    "sink": {"qdrant": {"collection": "c"}}}}
    proc = subprocess.run([sys.executable, "-m", "prism_pipeline", "run", "--spec", json.dumps(bad)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "spec.extractors[0].concurrency.min: must be >= 1" in proc.stderr
    assert OutcomeReport.from_text(proc.stdout.rstrip("\n").rsplit("\n", 1)[-1]).outcome is Outcome.INVALID_SPEC
