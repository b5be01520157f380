"""The e2e suite itself, where it can be checked without a cluster: it collects and skips cleanly,
and its helpers (kubectl table parsing, deadlines) behave."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from e2e.support.kubectl import parse_table
from e2e.support.waiting import WaitTimeout, wait_for

from .repo_files import ROOT

E2E_TESTS = {"test_job_succeeds_with_rising_progress_and_points_in_qdrant",
             "test_failed_attempt_is_retried_on_the_same_cluster", "test_suspend_then_resume",
             "test_ttl_deletes_the_ray_cluster_and_keeps_the_job",
             "test_delete_running_job_removes_its_children", "test_invalid_spec_fails_without_children"}


def test_suite_collects_every_scenario_and_skips_them_without_a_cluster():
    proc = subprocess.run([sys.executable, "-m", "pytest", "e2e", "-m", "e2e", "-v", "-rs", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    skipped = {m.group(1) for m in re.finditer(r"::(test_\w+) SKIPPED", proc.stdout)}
    assert skipped == E2E_TESTS, proc.stdout
    assert f"{len(E2E_TESTS)} skipped" in proc.stdout, proc.stdout
    assert "pass --kind" in proc.stdout and "--kubeconfig PATH" in proc.stdout


def test_options_are_registered():
    proc = subprocess.run([sys.executable, "-m", "pytest", "e2e", "--help", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    for option in ("--kubeconfig", "--kind", "--keep-cluster", "--job-image", "--keep-jobs"):
        assert option in proc.stdout, option


def test_parse_table_reads_kubectls_columns_including_empty_cells():
    text = ("NAME          PHASE     PROGRESS   FILES   POINTS   AGE\n"
            "e2e-success   Running   45         5/11    120      2m\n"
            "e2e-ttl       Pending                               3s\n")
    rows = parse_table(text)
    assert rows[0] == {"NAME": "e2e-success", "PHASE": "Running", "PROGRESS": "45", "FILES": "5/11",
                       "POINTS": "120", "AGE": "2m"}
    assert rows[1]["PHASE"] == "Pending" and rows[1]["PROGRESS"] == "" and rows[1]["AGE"] == "3s"
    assert parse_table("") == []


def test_wait_for_returns_the_first_truthy_result():
    values = iter([None, False, {"phase": "Running"}])
    assert wait_for("a phase", lambda: next(values), timeout=10, interval=0.01) == {"phase": "Running"}


def test_wait_for_fails_at_its_deadline_with_the_last_state():
    with pytest.raises(WaitTimeout, match=r"timed out after 0s waiting for the moon; last state: still Pending"):
        wait_for("the moon", lambda: None, timeout=0.2, interval=0.05, describe=lambda: "still Pending")


UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: nobody, user: {token: x}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


def test_an_unreachable_cluster_stops_the_suite_with_a_clear_message(tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    proc = subprocess.run([sys.executable, "-m", "pytest", "e2e", "--kubeconfig", str(kubeconfig),
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot reach the cluster of {kubeconfig}" in proc.stdout + proc.stderr
