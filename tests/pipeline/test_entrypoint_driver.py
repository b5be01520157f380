"""The driver's side of the RayJob entrypoint contract (prism_api.entrypoint): the command the operator
writes reaches `python -m prism_pipeline run` intact, a refused document exits 2 with a clear message,
the progress endpoint labels every sample with job, namespace and attempt and serves the verdict,
the operator's reader reads the real pipeline's endpoint, and the verdict is the driver's last line."""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import urllib.request
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prism_api import ExtractionJob
from prism_api import progress_report as metrics
from prism_api.entrypoint import MAX_DECODED_BYTES, Entrypoint, encode_document
from prism_api.outcome import OUTCOME_MARKER, Outcome, OutcomeReport
from prism_api.progress_report import Counts, FailedFile, ReportIdentity
from prism_pipeline.__main__ import JobArgError, build_parser, load_job, main
from prism_pipeline.progress_actor import ProgressState

from .conftest import TEXT, spec_for, write_media

DOCUMENT = {
    "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
    "metadata": {"name": "docs", "namespace": "team-a", "uid": "5d1c2c1e-0000-4000-8000-000000000001"},
    "spec": {
        "source": {"uri": "s3://media/docs/", "include": ["**/*.txt", "**/*.md"]},
        "extractors": [{"name": "notes", "kind": "python: notes.plugin:Notes", "batchSize": 8,
                        "options": {"note": "quotes ' \" $HOME `x` ; && | > < * ? \\ and ünïcode"}}],
        "sink": {"qdrant": {"url": "http://qdrant.qdrant:6333", "collection": "docs"}},
        "failurePolicy": {"maxFailedFileRatio": 0.25},
    },
}


def driver_args(entrypoint: str) -> list[str]:
    """The arguments after `python -m prism_pipeline`, split as a shell splits the entrypoint."""
    argv = shlex.split(entrypoint)
    assert argv[:3] == ["python", "-m", "prism_pipeline"]
    return argv[3:]


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def command(document: dict = DOCUMENT, attempt: int = 1, port: int = 0) -> str:
    return Entrypoint(document, attempt, port).command()


def test_the_operators_entrypoint_round_trips_through_the_drivers_parser():
    args = build_parser().parse_args(driver_args(command(attempt=3, port=9191)))
    assert (args.command, args.attempt, args.progress_port, args.spec) == ("run", 3, 9191, None)
    job = load_job(args)
    m = job.metadata
    assert (m.name, m.namespace, m.uid) == ("docs", "team-a", DOCUMENT["metadata"]["uid"])
    assert job.spec.source.uri == "s3://media/docs/"
    assert job.spec.failure_policy.max_failed_file_ratio == 0.25
    assert job.spec.extractors[0].options == DOCUMENT["spec"]["extractors"][0]["options"]


def test_spec_and_job_load_the_same_job(tmp_path):
    by_job = load_job(build_parser().parse_args(driver_args(command())))
    inline = build_parser().parse_args(["run", "--spec", json.dumps(DOCUMENT)])
    assert inline.attempt == 1 and load_job(inline) == by_job
    path = tmp_path / "job.json"
    path.write_text(json.dumps(DOCUMENT))
    assert load_job(build_parser().parse_args(["run", "--spec", str(path)])) == by_job


@pytest.mark.parametrize(("spec", "says"), [
    ("{nope", "--spec: not valid JSON"),
    ("/no/such/job.json", "neither inline JSON nor a readable file"),
    (json.dumps(DOCUMENT["spec"]), "--spec: invalid ExtractionJob"),  # a bare spec is not a job
], ids=["bad-json", "missing-file", "bare-spec"])
def test_a_refused_spec_names_the_option(spec, says):
    with pytest.raises(JobArgError, match=says):
        load_job(build_parser().parse_args(["run", "--spec", spec]))


@pytest.mark.parametrize("argv", [
    ["run"],                                                           # neither --job nor --spec
    ["run", "--job", encode_document(DOCUMENT), "--spec", "{}"],      # both
    ["run", "--job", encode_document(DOCUMENT), "--attempt", "0"],
    ["run", "--job", encode_document(DOCUMENT), "--attempt", "two"],
], ids=["no-job", "job-and-spec", "attempt-0", "attempt-nan"])
def test_a_bad_invocation_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def zlib_bomb() -> str:
    raw = b'{"spec": "' + b" " * (MAX_DECODED_BYTES + 1024) + b'"}'
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


@pytest.mark.parametrize(("encoded", "says"), [
    ("not*base64!", "--job: not a job document written by the operator"),
    (encode_document(DOCUMENT)[:-40], "--job: not a job document written by the operator"),   # truncated
    (base64.urlsafe_b64encode(zlib.compress(b"[1, 2]")).decode(), "--job: expected a mapping"),
    (zlib_bomb(), f"--job: the document inflates above {MAX_DECODED_BYTES} bytes"),
], ids=["not-base64", "truncated", "not-a-mapping", "oversized"])
def test_a_corrupt_or_oversized_job_exits_2_naming_job(encoded, says, capsys):
    with pytest.raises(JobArgError, match=r"^--job: "):
        load_job(build_parser().parse_args(["run", "--job", encoded]))
    assert main(["run", "--job", encoded, "--linger-seconds", "0"]) == 2
    out, err = capsys.readouterr()
    assert f"prism_pipeline: {says}" in err
    report = OutcomeReport.from_text(out)
    assert report is not None and report.outcome is Outcome.INVALID_SPEC and says in report.message
    assert last_line(out).startswith(OUTCOME_MARKER + " ")


def test_an_invalid_spec_in_job_exits_2_naming_the_field(capsys):
    bad = {**DOCUMENT, "spec": {**DOCUMENT["spec"], "extractors": [{**TEXT, "concurrency": {"min": 0}}]}}
    assert main(driver_args(command(bad))) == 2
    out, err = capsys.readouterr()
    assert "--job: invalid ExtractionJob" in err and "spec.extractors[0].concurrency.min" in err
    assert OutcomeReport.from_text(last_line(out)).outcome is Outcome.INVALID_SPEC


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_every_sample_carries_job_namespace_and_attempt_and_the_verdict_once_decided():
    state = ProgressState("docs", "team-a", 2, files_total=4)
    state.add(Counts(files_done=1, items={"text": 3}), [FailedFile("/a", "decode", "bad")])
    assert metrics.OUTCOME not in families(state.prometheus().decode())  # no verdict yet

    state.finish(Counts(files_done=1, files_failed=3), [FailedFile("/a", "decode", "bad")],
                 Outcome.TOO_MANY_FAILED_FILES.value, "too many files failed")
    served = families(state.prometheus().decode())
    own = {metrics.JOB_LABEL: "docs", metrics.NAMESPACE_LABEL: "team-a", metrics.ATTEMPT_LABEL: "2"}
    samples = [s for f in served.values() for s in f]
    assert samples and all({k: s.labels.get(k) for k in own} == own for s in samples)
    assert [(s.labels["outcome"], s.value) for s in served[metrics.OUTCOME]] == [("TooManyFailedFiles", 1)]
    assert {s.name: s.value for s in served[metrics.PIPELINE_FINISHED]} == {metrics.PIPELINE_FINISHED: 1}

    state.set_outcome(Outcome.FAILED.value, "later")  # the driver's last word is what is served
    assert [s.labels["outcome"] for s in families(state.prometheus().decode())[metrics.OUTCOME]] == ["Failed"]
    with pytest.raises(ValueError):
        state.set_outcome("Exploded")


@pytest.mark.slow
def test_too_many_failed_files_is_served_and_printed_last(ray_session, tmp_path, capsys, monkeypatch):
    import prism_pipeline.progress_actor as progress
    from prism_pipeline.runner import execute

    actors = []
    start = progress.start_progress_actor

    def keep(*args, **kwargs):
        actor, port = start(*args, **kwargs)
        actors.append(actor)
        return actor, port

    monkeypatch.setattr(progress, "start_progress_actor", keep)
    media = write_media(tmp_path / "media", images=0, corrupt=True)
    spec = spec_for(media, "verdict", [TEXT], failurePolicy={"maxFailedFileRatio": 0.1})
    job = ExtractionJob.model_validate({"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
                                        "metadata": {"name": "verdict", "namespace": "team-a", "uid": "uid-1"},
                                        "spec": spec.to_wire()})
    code = execute(job, state_dir=tmp_path / "state", progress_port=0,
                   show_bar=False, print_ledger=True, attempt=2, print_outcome=True)

    assert code == 1
    out = capsys.readouterr().out
    report = OutcomeReport.from_text(last_line(out))
    assert report is not None and report.outcome is Outcome.TOO_MANY_FAILED_FILES
    assert "too many files failed" in report.message and "PRISM_FAILURE" in out

    import ray

    port = ray.get(actors[0].port.remote(), timeout=30)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PROGRESS_PATH}", timeout=10).read().decode()
    outcome = families(body)[metrics.OUTCOME]
    assert [(s.labels["job"], s.labels["namespace"], s.labels["attempt"], s.labels["outcome"]) for s in outcome] == \
        [("verdict", "team-a", "2", "TooManyFailedFiles")]

    # The operator's reader, over HTTP, on the real pipeline's endpoint: the same numbers the driver
    # counted, the verdict with its words, and nothing for another attempt.
    import aiohttp

    from prism_operator.progress_scraper import fetch_progress

    async def read(attempt: int):
        async with aiohttp.ClientSession() as session:
            return await fetch_progress(session, f"http://127.0.0.1:{port}{metrics.PROGRESS_PATH}", 10,
                                        ReportIdentity("verdict", "team-a", attempt))

    reading = asyncio.run(read(2))
    assert reading.error == "", reading.error
    got = reading.report
    assert got.outcome is Outcome.TOO_MANY_FAILED_FILES and got.message == report.message
    ledger = [json.loads(line) for line in (tmp_path / "state" / "jobs" / "verdict" / "failures.jsonl").open()]
    listed = sorted(p for p in media.rglob("*") if p.is_file())
    assert got.finished and got.files_total == len(listed)
    assert got.counts.files_failed == len(ledger) >= 3 and got.counts.files_finished == len(listed)
    assert {(f.uri, f.stage, f.error) for f in got.failures} == {(f["uri"], f["stage"], f["error"]) for f in ledger}
    assert got.counts.items["text"] >= got.counts.files_done > 0 and got.counts.points_written == got.counts.items["text"]
    assert got.counts.bytes_read > 0 and got.counts.cpu_seconds > 0
    assert asyncio.run(read(1)).report is None
