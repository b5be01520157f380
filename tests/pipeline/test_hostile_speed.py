"""Issue 15 (hostile input), day-one rough edges of `prism run`, as a user runs it (real processes,
real Ray): no Ray C++ log lines on the console unless -v, a re-run with nothing to do builds no
pipeline, and the reported wall time includes Ray's start-up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import TEXTS

PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"
CPP_LOG = re.compile(r"^\[?\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\]? \S+\.cc:\d+|\(raylet\)|core_worker\.cc", re.M)

JOB = """\
apiVersion: prism.dev/v1alpha1
kind: ExtractionJob
metadata: {{name: again}}
spec:
  source: {{uri: {media}}}
  extractors:
    - {{name: text, kind: text-embedding}}
  sink: {{qdrant: {{collection: again}}}}
"""


def run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([PRISM, "run", str(tmp_path / "job.yaml"), "--state-dir", str(tmp_path / "state"),
                             "--no-progress-bar", *extra], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return result, time.monotonic() - started


def reported_wall_s(stdout: str) -> float:
    return float(re.search(r"^Job again: Succeeded in ([\d.]+) s$", stdout, re.M).group(1))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("again")
    media = tmp_path / "media"
    media.mkdir()
    for name in ("bees.txt", "ocean.txt"):
        (media / name).write_text(TEXTS[name])
    (tmp_path / "job.yaml").write_text(JOB.format(media=media))
    result, _ = run(tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path, result


def test_a_run_prints_no_ray_cpp_log_lines(first_run):
    _, result = first_run
    assert "2 listed, 2 done" in result.stdout
    assert not CPP_LOG.search(result.stderr), result.stderr


def test_a_rerun_with_nothing_to_do_builds_no_pipeline_and_counts_start_up(first_run):
    tmp_path, _ = first_run
    result, elapsed = run(tmp_path, "-v")
    assert result.returncode == 0, result.stderr
    assert "2 listed, 0 done, 0 failed, 2 skipped" in result.stdout
    assert "nothing to extract, no pipeline started" in result.stderr
    assert "ExtractorStage" not in result.stderr  # no actor pool started
    # The reported time is the process's, Ray's start-up included: only the interpreter's start and
    # exit are outside it.
    wall = reported_wall_s(result.stdout)
    assert elapsed - wall < max(4.0, 0.25 * elapsed), (wall, elapsed)


def test_a_changed_file_still_goes_through_the_pipeline(first_run):
    tmp_path, _ = first_run
    (tmp_path / "media" / "ocean.txt").write_text(TEXTS["space.txt"])
    result, _ = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 listed, 1 done, 0 failed, 1 skipped" in result.stdout
