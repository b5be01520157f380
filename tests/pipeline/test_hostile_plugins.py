"""Plug-ins that misbehave cost only what they touch and name themselves (issue 15):

- a plug-in whose process dies on one item (os._exit, SIGKILL: a native crash, the OOM killer)
  fails that item under its name, and the job goes on; one that dies on everything fails the job
  after a bounded number of deaths, saying so, instead of restarting until the stall timeout;
- a payload JSON cannot hold fails its item, naming the extractor and the type, not the write;
- a setup() that raises fails the job in one line naming the extractor, without a traceback.

The process-death tests run `prism run` in their own process and Ray, so the deaths are real and
the shared test Ray never sees them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from prism_pipeline import rows as R
from prism_pipeline.extract_stage import ExtractorStage
from prism_pipeline.points import to_point

from .conftest import ROOT, spec_for, write_media

PRISM = ROOT / ".venv" / "bin" / "prism"


def text_row(name: str, text: str) -> dict:
    uri = f"/m/{name}"
    return {"uri": uri, "key": f"{uri}#chunk=0", "status": R.ITEM, "content_hash": "ab" * 32, "modality": "text",
            "file_modality": "document", "text": text, "chunk": 0, "file_items": 1, "bytes_read": len(text),
            "decoded": True, "outputs": {}, "errors": []}


# -- payloads JSON cannot hold, in the stage itself ---------------------------------------------------------

@pytest.mark.parametrize(("bad", "named"), [("set", "a set"), ("object", "an Opaque"), ("bytes", "bytes"),
                                            ("nan", "nan")])
def test_a_payload_json_cannot_hold_fails_only_its_item_naming_the_extractor_and_the_value(bad, named):
    stage = ExtractorStage({"name": "digest", "kind": "python: tests.pipeline.plugins:BadPayload",
                            "options": {"bad": bad}})
    out = R.from_batch(stage(R.to_batch([text_row("poison.txt", "holds poison"), text_row("ok.txt", "fine")])))
    poison, ok = out
    assert poison["outputs"] == {} and len(poison["errors"]) == 1
    assert poison["errors"][0]["stage"] == "digest"
    reason = poison["errors"][0]["error"]
    assert reason.startswith("/m/poison.txt#chunk=0: extractor 'digest' returned a payload JSON cannot hold: ")
    assert named in reason
    assert ok["outputs"] == {"digest": {"chars": 4}} and ok["errors"] == []
    # Both rows make points whose payload is plain JSON (what a Qdrant server accepts).
    for row in out:
        json.dumps(to_point(row, set(), {"digest"}, {"digest": "v1"}).payload, allow_nan=False)


def test_numpy_values_in_a_payload_are_fine():
    from prism_pipeline.extract_stage import payload_problem

    assert payload_problem({"n": np.int64(3), "v": np.ones(2, np.float32), "t": ("a", 1.5, None, True)}) is None
    assert payload_problem({"v": np.array([1.0, math.inf])}) == "payload['v'][1] is inf"
    assert payload_problem({1: "x"}) is None  # keys become strings in the payload
    assert payload_problem({"a": [{"b": {1, 2}}]}) == "payload['a'][0]['b'] is a set"


def test_a_per_file_plugin_with_a_bad_payload_fails_only_that_item_too():
    from prism_api import ExtractorSpec
    from prism_pipeline.extractors import build
    from prism_pipeline.read_stage import _run_per_file

    ex = build(ExtractorSpec(name="seq", kind="python: tests.pipeline.plugins:BadPayloadPerFile",
                             options={"bad": "bytes"}))
    poison, ok = text_row("v.txt", "poison here"), text_row("v.txt", "fine")
    _run_per_file(ex, [poison, ok])
    assert poison["outputs"] == {} and [e["stage"] for e in poison["errors"]] == ["seq"]
    assert poison["errors"][0]["error"] == "extractor 'seq' returned a payload JSON cannot hold: payload['raw'] is bytes"
    assert ok["outputs"] == {"seq": {"chars": 4}} and ok["errors"] == []


@pytest.mark.slow
def test_a_bad_payload_fails_its_file_under_the_extractor_and_the_job_goes_on(ray_session, tmp_path):
    from prism_pipeline.pipeline import run_job

    media = write_media(tmp_path / "media", images=0)
    (media / "poison.txt").write_text("this chunk holds poison")
    spec = spec_for(media, "badpayload", [{"name": "digest", "kind": "python: tests.pipeline.plugins:BadPayload",
                                            "batchSize": 8, "options": {"bad": "object"}}],
                    failurePolicy={"maxFailedFileRatio": 0.5})
    result = run_job("badpayload", spec, state_dir=tmp_path / "state")
    assert result.ok and result.points_in_collection == 5
    assert [(f.uri.rsplit("/", 1)[-1], f.stage) for f in result.failures] == [("poison.txt", "digest")]
    assert "payload['result'] is an Opaque" in result.failures[0].error


# -- the crash journal, across "restarts" (a new journal on the same file is the restarted actor) ----------

def test_the_crash_journal_narrows_a_death_down_to_the_item_and_forgets_it_once_through(tmp_path):
    from prism_pipeline.extract_stage import CrashJournal

    path = tmp_path / "actor.json"
    CrashJournal(path).begin(["a", "b"])  # the process dies with a batch in flight
    j = CrashJournal(path)
    assert (j.suspects, j.died_on, j.in_a_row, j.last) == ({"a", "b"}, {}, 1, "a batch of 2 items")
    j.begin(["a"])
    j.survived()  # a came through alone
    j.begin(["b"])  # and the process dies on b, alone in flight
    j = CrashJournal(path)
    assert (j.died_on, j.in_a_row, j.last) == ({"b": os.getpid()}, 1, "b")
    j.settle(["a", "b"])  # the batch came through (b failed without being run again)
    assert CrashJournal(path).died_on == {} and j.in_a_row == 1  # no call has come through since the death
    j.begin(["c"])
    j.survived()
    assert not path.exists()  # nothing left to remember

    CrashJournal(path).begin(["<setup>"])  # deaths in setup() count, without blaming an item
    j = CrashJournal(path)
    assert (j.suspects, j.died_on, j.in_a_row, j.last) == (set(), {}, 1, "<setup>")


def test_a_stage_fails_without_running_it_again_the_item_its_process_died_on(tmp_path):
    from prism_pipeline.extract_stage import CrashJournal

    path = tmp_path / "actor.json"
    CrashJournal(path).begin(["/m/poison.txt#chunk=0", "/m/ok.txt#chunk=0"])
    CrashJournal(path).begin(["/m/poison.txt#chunk=0"])  # the restarted actor died on it alone
    stage = ExtractorStage({"name": "digest", "kind": "python: tests.pipeline.plugins:DiesOn"})
    stage.journal = CrashJournal(path)  # what the next restart reads
    poison, ok = R.from_batch(stage(R.to_batch([text_row("poison.txt", "holds poison"), text_row("ok.txt", "fine")])))
    assert poison["outputs"] == {} and poison["errors"][0]["stage"] == "digest"
    assert poison["errors"][0]["error"].startswith(
        f"/m/poison.txt#chunk=0: the extractor's process died on this item (pid {os.getpid()} exited or was killed")
    assert ok["outputs"] == {"digest": {"chars": 4}}
    assert not path.exists()


# -- real process deaths and a broken setup(), through `prism run` -----------------------------------------

def prism_run(tmp_path: Path, name: str, extractor: dict, *, stall_s: int = 90,
              max_failed: float = 0.5) -> tuple[subprocess.CompletedProcess, float]:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    for n in ("a", "b", "c"):
        (media / f"{n}.txt").write_text(f"harmless text number {n}")
    (media / "poison.txt").write_text("this chunk holds poison")
    job = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": name},
           "spec": {"source": {"uri": str(media)}, "extractors": [extractor],
                    "sink": {"qdrant": {"collection": name}}, "stallTimeoutSeconds": stall_s,
                    "failurePolicy": {"maxFailedFileRatio": max_failed}}}
    manifest = tmp_path / "job.yaml"
    manifest.write_text(json.dumps(job))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    started = time.monotonic()
    proc = subprocess.run([str(PRISM), "run", str(manifest), "--no-progress-bar", "--state-dir",
                           str(tmp_path / "state")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=stall_s + 150)
    return proc, time.monotonic() - started


def raylet_lines(proc: subprocess.CompletedProcess) -> int:
    return sum("(raylet)" in line for line in (proc.stdout + proc.stderr).splitlines())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_plugin_whose_process_dies_on_one_item_fails_that_item_and_the_job_goes_on(tmp_path):
    dies = {"name": "digest", "kind": "python: tests.pipeline.plugins:DiesOn", "batchSize": 8}
    proc, wall = prism_run(tmp_path, "dies", dies, stall_s=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]  # 1 of 4 files failed, within maxFailedFileRatio 0.5
    assert "stalled" not in out and wall < 90
    assert "3 files done, 0 skipped, 1 failed" in proc.stdout
    ledger = [json.loads(line) for line in (tmp_path / "state/jobs/dies/failures.jsonl").read_text().splitlines()]
    assert [(Path(f["uri"]).name, f["stage"]) for f in ledger] == [("poison.txt", "digest")]
    assert "the extractor's process died on this item" in ledger[0]["error"]
    assert raylet_lines(proc) <= 12, out[-3000:]  # Ray's notes on the deaths, bounded: no flood


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_plugin_whose_process_dies_on_every_item_fails_the_job_after_bounded_deaths(tmp_path):
    from prism_pipeline.extract_stage import MAX_DEATHS_IN_A_ROW

    dies = {"name": "digest", "kind": "python: tests.pipeline.plugins:DiesOn", "batchSize": 2,
            "options": {"word": "", "how": "kill"}}
    proc, wall = prism_run(tmp_path, "crashloop", dies, stall_s=120, max_failed=1.0)
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert "stalled" not in proc.stderr and wall < 120
    assert (f"prism: job crashloop failed: extractor 'digest' (python: tests.pipeline.plugins:DiesOn): its process "
            f"died {MAX_DEATHS_IN_A_ROW} times in a row without finishing an item") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert raylet_lines(proc) <= 3 * MAX_DEATHS_IN_A_ROW


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_setup_that_raises_fails_the_job_in_one_line_naming_the_extractor(tmp_path):
    broken = {"name": "broken", "kind": "python: tests.pipeline.plugins:BrokenSetup"}
    proc, _ = prism_run(tmp_path, "broken", broken, stall_s=60)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "failed to start" in line]
    assert lines == ["prism: job broken failed: extractor 'broken' (python: tests.pipeline.plugins:BrokenSetup) "
                     "failed to start: ValueError: no weights at /models/missing"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.mark.slow
def test_when_ray_gives_up_restarting_the_job_fails_naming_the_extractor(ray_session, tmp_path, monkeypatch):
    """Ray's own bound on restarts, the backstop when the crash journal cannot help (here: reached
    before the journal's own bound)."""
    from prism_pipeline import extract_stage
    from prism_pipeline.pipeline import JobError, run_job

    monkeypatch.setattr(extract_stage, "ACTOR_MAX_RESTARTS", 1)
    monkeypatch.setattr(extract_stage, "ACTOR_MAX_TASK_RETRIES", 1)
    media = write_media(tmp_path / "media", images=0)
    spec = spec_for(media, "giveup", [{"name": "digest", "kind": "python: tests.pipeline.plugins:DiesOn",
                                       "options": {"word": ""}}], stallTimeoutSeconds=60)
    started = time.monotonic()
    with pytest.raises(JobError) as raised:
        run_job("giveup", spec, state_dir=tmp_path / "state")
    assert str(raised.value).startswith("extractor 'digest': its process died 2 times (Ray restarts one actor "
                                        "at most 1 times)")
    assert time.monotonic() - started < 60, time.monotonic() - started
