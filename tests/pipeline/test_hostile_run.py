"""`prism run` against a hostile machine: odd file names, unreadable folders, an unwritable ledger,
Ctrl-C and SIGTERM, spec.activeDeadlineSeconds, a plug-in's bug. Each test runs the real command in its
own process (and its own Ray), sends real signals, and looks at what a person would see: the exit
status, stdout, stderr, the failure ledger, and the processes left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from prism_api.progress_report import FILES_DONE

from .conftest import ROOT

pytestmark = pytest.mark.slow

PRISM = (sys.executable, "-m", "prism_cli.main")
SLOW = "python: tests.pipeline.plugins:Slow"


def job_file(tmp_path: Path, name: str, media: Path, extractor: dict, **spec) -> Path:
    doc = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": name},
           "spec": {"source": {"uri": str(media)}, "extractors": [extractor],
                    "sink": {"qdrant": {"collection": name}}, **spec}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def prism_run(tmp_path: Path, job: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *PRISM, "run", str(job), "--state-dir", str(tmp_path / "state"),
                           "--no-progress-bar", *args],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=240)


def ledger(tmp_path: Path, name: str) -> list[dict]:
    path = tmp_path / "state" / "jobs" / name / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def text_files(folder: Path, n: int, *, poison: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if poison:
        (folder / "a_poison.txt").write_text("poison in the first file")
    for i in range(n):
        (folder / f"f{i:03d}.txt").write_text(f"text number {i} about honeybees and flowers")
    return folder


# -- odd names, unreadable folders (issue 15, item 6) ----------------------------------------------------

def test_odd_file_names_and_unreadable_folders_are_failures_in_the_ledger(tmp_path):
    media = text_files(tmp_path / "media", 3)
    with open(os.fsencode(media) + b"/bad\xff.txt", "wb") as f:  # not valid UTF-8
        f.write(b"some text in a file whose name is latin-1")
    locked = media / "locked"
    locked.mkdir()
    (locked / "inside.txt").write_text("never listed")
    locked.chmod(0)
    # root reads any folder: drop the capabilities that let it (the test runs as root in CI containers)
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    try:
        job = job_file(tmp_path, "odd", media, {"name": "chars", "kind": "python: tests.pipeline.plugins:Poisoned"},
                       failurePolicy={"maxFailedFileRatio": 0.5})
        proc = prism_run(tmp_path, job, prefix=prefix)
    finally:
        locked.chmod(0o755)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 listed, 3 done, 2 failed" in proc.stdout, proc.stdout
    failures = {f["uri"]: f for f in ledger(tmp_path, "odd")}
    bad = failures[f"{media}/bad\\xff.txt"]  # readable: the undecodable byte as a backslash escape
    assert bad["stage"] == "list" and "not valid UTF-8" in bad["error"], bad
    folder = failures[f"{locked}/"]
    assert folder["stage"] == "list" and "Permission denied" in folder["error"], folder


# -- the failure ledger cannot be written (item 8) ------------------------------------------------------

def test_an_unwritable_ledger_is_one_message_and_exit_1_after_the_verdict(tmp_path):
    media = text_files(tmp_path / "media", 2, poison=True)
    (tmp_path / "state" / "jobs").mkdir(parents=True)
    (tmp_path / "state" / "jobs" / "nolog").write_text("a file where the job's ledger folder should be")
    job = job_file(tmp_path, "nolog", media, {"name": "chars", "kind": "python: tests.pipeline.plugins:Poisoned"},
                   failurePolicy={"maxFailedFileRatio": 0.5})
    proc = prism_run(tmp_path, job)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Job nolog: Succeeded" in proc.stdout  # the verdict stands
    where = tmp_path / "state" / "jobs" / "nolog" / "failures.jsonl"
    assert f"job nolog succeeded but its failure ledger could not be written to {where}" in proc.stderr
    assert "collection 'nolog'" in proc.stderr  # where its results are


# -- Ctrl-C, SIGTERM (item 11) --------------------------------------------------------------------------

def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (Ray's gcs_server, raylet, agents and workers), by pid: command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
            except OSError:
                continue
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_done(port: int) -> int:
    """prism_files_done_total on the run's progress endpoint (0 until it answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith(FILES_DONE))


def interrupt_midway(tmp_path: Path, name: str, signals: list[signal.Signals], *, group: bool):
    """Start `prism run` on slow files, wait until files are done (its progress endpoint says so),
    send `signals` (to the whole process group, as a terminal's Ctrl-C does, or to prism alone, as a
    supervisor does); return the exit status, stdout, stderr, the Ray processes it had started that
    are still alive, the seconds it took to exit, and the job's manifest."""
    media = text_files(tmp_path / "media", 20, poison=True)
    job = job_file(tmp_path, name, media, {"name": "chars", "kind": SLOW, "batchSize": 1, "options": {"seconds": 0.5}},
                   failurePolicy={"maxFailedFileRatio": 0.5})
    port = free_port()
    proc = subprocess.Popen([*PRISM, "run", str(job), "--state-dir", str(tmp_path / "state"), "--no-progress-bar",
                             "--progress-port", str(port)],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while proc.poll() is None and files_done(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        if proc.poll() is not None:
            pytest.fail(f"prism run ended before the signal: {proc.returncode}\n{proc.communicate()[1][-3000:]}")
        ray_procs = descendants(proc.pid)
        assert any("raylet" in cmd for cmd in ray_procs.values()), ray_procs
        for sig in signals:
            (os.killpg if group else os.kill)(proc.pid, sig)
            time.sleep(0.1)
        started = time.monotonic()
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    gone_by = time.monotonic() + 15
    while any(alive(p) for p in ray_procs) and time.monotonic() < gone_by:
        time.sleep(0.3)
    left = {p: cmd for p, cmd in ray_procs.items() if alive(p)}
    return proc.returncode, out, err, left, took, job


def test_ctrl_c_exits_130_with_the_summary_and_ledger_and_leaves_no_ray_behind(tmp_path):
    code, out, err, left, _, job = interrupt_midway(tmp_path, "ctrlc", [signal.SIGINT], group=True)
    assert "Traceback" not in err + out, err[-4000:]
    assert code == 130, err[-3000:]
    assert "Job ctrlc: Interrupted" in out, out
    assert "interrupted by SIGINT" in out
    assert not left, f"Ray processes left behind: {left}"
    # the ledger of what finished: the poisoned file if it got through before the signal, nothing else
    assert {f["uri"] for f in ledger(tmp_path, "ctrlc")} <= {str(tmp_path / "media" / "a_poison.txt")}
    done = int(out.split(" listed, ", 1)[1].split(" done", 1)[0])
    assert 1 <= done < 20, out
    # What finished stays recorded: the next run skips it and processes the rest (no marks, no wait).
    again = prism_run(tmp_path, job_file(tmp_path, "ctrlc", tmp_path / "media",
                                         {"name": "chars", "kind": SLOW, "batchSize": 1, "options": {"seconds": 0}},
                                         failurePolicy={"maxFailedFileRatio": 0.5}))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"21 listed, {20 - done} done, 1 failed, {done} skipped" in again.stdout, again.stdout


def test_sigterm_exits_143_with_the_summary_and_leaves_no_ray_behind(tmp_path):
    code, out, err, left, _, _ = interrupt_midway(tmp_path, "term", [signal.SIGTERM], group=False)
    assert "Traceback" not in err + out, err[-4000:]
    assert code == 143, err[-3000:]
    assert "Job term: Interrupted" in out and "interrupted by SIGTERM" in out, out
    assert not left, f"Ray processes left behind: {left}"
    assert (tmp_path / "state" / "jobs" / "term" / "failures.jsonl").exists()


def test_a_second_ctrl_c_exits_at_once_and_still_leaves_no_ray_behind(tmp_path):
    code, out, err, left, took, _ = interrupt_midway(tmp_path, "twice", [signal.SIGINT, signal.SIGINT], group=True)
    assert "Traceback" not in err + out, err[-4000:]
    assert code == 130, err[-3000:]
    assert not left, f"Ray processes left behind: {left}"
    assert took < 10, took


# -- spec.activeDeadlineSeconds (item 10) ---------------------------------------------------------------

def test_active_deadline_stops_the_local_run_with_exit_1_and_the_summary(tmp_path):
    media = text_files(tmp_path / "media", 200, poison=True)
    job = job_file(tmp_path, "late", media, {"name": "chars", "kind": SLOW, "batchSize": 1,
                                             "options": {"seconds": 0.3}},
                   activeDeadlineSeconds=10, failurePolicy={"maxFailedFileRatio": 0.5})
    started = time.monotonic()
    proc = prism_run(tmp_path, job)
    took = time.monotonic() - started
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "ran longer than spec.activeDeadlineSeconds=10" in proc.stdout + proc.stderr
    assert "Job late: Failed" in proc.stdout, proc.stdout  # the summary of what finished
    assert (tmp_path / "state" / "jobs" / "late" / "failures.jsonl").exists()
    assert took < 50, took  # 201 files at 0.3 s would take over a minute


# -- exit codes and unexpected errors (item 9) ----------------------------------------------------------

def test_an_unexpected_error_is_one_line_and_a_hint_the_traceback_only_with_v(tmp_path):
    media = text_files(tmp_path / "media", 1)
    job = job_file(tmp_path, "buggy", media, {"name": "bug", "kind": "python: tests.pipeline.plugins:BadFingerprint"})
    proc = prism_run(tmp_path, job)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "prism: job buggy failed: RuntimeError: bug in the plug-in's fingerprint" in proc.stderr
    assert "rerun with -v for the traceback" in proc.stderr
    verbose = prism_run(tmp_path, job, "-v")
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "bug in the plug-in's fingerprint" in verbose.stderr


def test_a_missing_manifest_is_a_user_error_exit_2(tmp_path):
    proc = prism_run(tmp_path, tmp_path / "nowhere.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nowhere.yaml" in proc.stderr
