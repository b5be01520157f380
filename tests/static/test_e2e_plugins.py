"""The plug-in extractors the e2e jobs use (e2e/plugins): attempt detection, options, and a real
`prism run` through the pipeline's plug-in loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from prism_api import ExtractorSpec
from prism_pipeline.extractors import build

from .repo_files import ROOT

PLUGINS = ROOT / "e2e" / "plugins"
sys.path.insert(0, str(PLUGINS))
from prism_e2e.extractors import RAY_JOB_CONFIG_ENV, current_attempt  # noqa: E402


def job_config(metadata: dict) -> dict[str, str]:
    return {RAY_JOB_CONFIG_ENV: json.dumps({"runtime_env": {}, "metadata": metadata})}


@pytest.mark.parametrize("metadata, attempt", [
    ({"prism.dev/attempt": "1", "job_submission_id": "e2e-retry-1a2b3-a1"}, 1),
    ({"prism.dev/attempt": "3"}, 3),
    ({"job_submission_id": "e2e-retry-1a2b3-a2"}, 2),  # without the RayJob metadata: the submission id
    ({"job_submission_id": "raysubmit_abc"}, None),
    ({}, None),
])
def test_current_attempt_from_the_ray_job_config(metadata, attempt):
    assert current_attempt(job_config(metadata)) == attempt


def test_current_attempt_outside_a_ray_driver():
    assert current_attempt({}) is None
    assert current_attempt({RAY_JOB_CONFIG_ENV: "not json"}) is None


def spec(kind: str, **options) -> ExtractorSpec:
    return ExtractorSpec.model_validate({"name": "x", "kind": f"python: prism_e2e.extractors:{kind}",
                                         "options": options})


def test_fail_first_attempt_raises_in_attempt_one_only(monkeypatch):
    monkeypatch.setenv(RAY_JOB_CONFIG_ENV, job_config({"prism.dev/attempt": "1"})[RAY_JOB_CONFIG_ENV])
    with pytest.raises(RuntimeError, match="attempt 1 fails on purpose"):
        build(spec("FailFirstAttempt"))
    monkeypatch.setenv(RAY_JOB_CONFIG_ENV, job_config({"prism.dev/attempt": "2"})[RAY_JOB_CONFIG_ENV])
    ex = build(spec("FailFirstAttempt"))
    assert ex([{"modality": "text", "text": "a"}]) == [{"ok": True}]
    monkeypatch.delenv(RAY_JOB_CONFIG_ENV)
    assert build(spec("FailFirstAttempt")).attempt is None  # a Ray actor: never fails


def test_pace_checks_its_option():
    assert build(spec("Pace", secondsPerItem=0))([{"modality": "image"}] * 2) == [{"secondsPerItem": 0.0}] * 2
    with pytest.raises(ValueError, match="secondsPerItem must be between 0 and 60"):
        build(spec("Pace", secondsPerItem=600))
    with pytest.raises(ValueError, match="secondsPerItem must be int or float"):
        build(spec("Pace", secondsPerItem="slow"))


def local_job(tmp_path) -> str:
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "examples" / "media" / "docs", docs)
    job = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": "e2e-plugins"},
           "spec": {"source": {"uri": str(docs)},
                    "extractors": [
                        {"name": "pace", "kind": "python: prism_e2e.extractors:Pace", "options": {"secondsPerItem": 0}},
                        {"name": "flaky", "kind": "python: prism_e2e.extractors:FailFirstAttempt"}],
                    "sink": {"qdrant": {"collection": "e2e-plugins"}}}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return str(path)


def prism_run(tmp_path, job: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (RAY_JOB_CONFIG_ENV, "RAY_ADDRESS")}
    env.update(extra_env, PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")])))
    prism = shutil.which("prism", path=os.path.dirname(sys.executable)) or "prism"
    return subprocess.run([prism, "run", job, "--no-progress-bar", "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=540, env=env, cwd=tmp_path)


def test_attempt_one_fails_before_any_work(tmp_path):
    proc = prism_run(tmp_path, local_job(tmp_path), job_config({"prism.dev/attempt": "1"}))
    assert proc.returncode != 0
    assert "attempt 1 fails on purpose" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_plugins_run_through_the_real_pipeline(tmp_path):
    """Outside a Ray job driver (no job config), both plug-ins load by path and the job succeeds."""
    proc = prism_run(tmp_path, local_job(tmp_path), {})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
