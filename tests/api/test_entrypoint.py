"""The RayJob entrypoint (prism_api.entrypoint) and the pipeline's verdict line (prism_api.outcome):
one writer and one parser each, round-trip tested, including through a real shell."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from prism_api import parse_job
from prism_api.entrypoint import MAX_ENCODED_BYTES, Entrypoint, EntrypointError, job_document
from prism_api.outcome import OUTCOME_MARKER, Outcome, OutcomeReport

JOB = parse_job({
    "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
    "metadata": {"name": "docs", "namespace": "team-a", "uid": "5d1c2c1e-0000-4000-8000-000000000001",
                 "labels": {"kueue.x-k8s.io/queue-name": "q"}, "resourceVersion": "77"},
    "spec": {
        "source": {"uri": "s3://media/docs/"},
        "extractors": [{"name": "notes", "kind": "python: notes.plugin:Notes",  # a plug-in takes any option
                        "options": {"note": "quotes ' \" $HOME `x` ; && | > < * ? \\ ünïcode\nline"}}],
        "sink": {"qdrant": {"url": "http://qdrant.qdrant:6333", "collection": "docs"}},
    },
})


def test_the_command_round_trips():
    ep = Entrypoint.for_job(JOB, attempt=7, progress_port=9191)
    back = Entrypoint.parse(ep.command())
    assert back == ep and back.attempt == 7 and back.progress_port == 9191
    assert parse_job(back.document).spec == JOB.spec
    # The document is the job's identity and spec only: no labels, no resourceVersion, no status.
    assert back.document == job_document(JOB)
    assert back.document["metadata"] == {"name": "docs", "namespace": "team-a", "uid": JOB.metadata.uid}


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_a_shell_passes_the_command_through_unchanged():
    """KubeRay's submitter and Ray run the entrypoint through a shell: it must survive one."""
    command = Entrypoint.for_job(JOB, attempt=2).command()
    echoed = subprocess.run(["bash", "-c", f"printf '%s ' {command.split(' ', 3)[3]}"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert Entrypoint.parse("python -m prism_pipeline " + echoed) == Entrypoint.parse(command)


@pytest.mark.parametrize(("command", "says"), [
    ("python -m something_else run --job x", "not a Prism entrypoint"),
    ("python -m prism_pipeline run --attempt 1", "--job"),
    ("python -m prism_pipeline run --job abc --attempt 0", "--attempt"),
    ("python -m prism_pipeline run --job abc --attempt 100", "--attempt"),
    ("python -m prism_pipeline run --job abc --progress-port 70000", "--progress-port"),
    ("python -m prism_pipeline run --job not*base64!", "--job: not a job document"),
])
def test_a_bad_command_is_refused_by_name(command, says):
    with pytest.raises(EntrypointError, match=says.replace("*", r"\*")):
        Entrypoint.parse(command)


def test_a_document_too_large_for_one_argument_is_refused_before_any_command():
    import os

    huge = JOB.model_copy(deep=True)
    huge.spec.extractors[0].options["blob"] = os.urandom(MAX_ENCODED_BYTES).hex()
    with pytest.raises(EntrypointError, match="above the entrypoint limit"):
        Entrypoint.for_job(huge, attempt=1).command()


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_verdict_line_round_trips(outcome):
    report = OutcomeReport(outcome, "2 of 3 files failed\n" + "x" * 3000)
    line = report.to_line()
    assert line.startswith(OUTCOME_MARKER + " ") and "\n" not in line
    back = OutcomeReport.from_text(f"Job failed, last logs:\nnoise\n{line}\n")
    assert back.outcome is outcome and back.message == report.message[:2000]
    assert outcome.retryable() == (outcome is Outcome.FAILED)


def test_the_verdict_line_carries_a_bounded_sample_of_the_failed_files():
    from prism_api.failed_file import MAX_FAILURE_SAMPLES, FailedFile
    from prism_api.outcome import LINE_ERROR_CHARS, LINE_URI_CHARS, MAX_LINE_CHARS

    failed = tuple(FailedFile(f"s3://b/{'d/' * 400}{i}-\udcff.pdf", "decode", "bad\n" * 200) for i in range(25))
    report = OutcomeReport(Outcome.TOO_MANY_FAILED_FILES, "m" * 5000, 25, failed)
    line = report.to_line()
    assert "\n" not in line and line.isascii() and len(line) < 12_000  # well inside Ray's 20,000-char tail
    back = OutcomeReport.from_text(f"noise\n{line}\n")
    assert back.files_failed == 25 and len(back.failures) == MAX_FAILURE_SAMPLES
    assert back.failures[0] == FailedFile(failed[0].uri[:LINE_URI_CHARS], "decode", failed[0].error[:LINE_ERROR_CHARS])
    assert OutcomeReport.from_text(OutcomeReport(Outcome.SUCCEEDED).to_line()) == OutcomeReport(Outcome.SUCCEEDED)
    # Text that escapes to 6 characters a character still makes a bounded line, with fewer samples.
    wide = tuple(FailedFile("s3://b/" + "\u00e9" * 2000, "decode", "\u00e9" * 2000) for _ in range(10))
    line = OutcomeReport(Outcome.FAILED, "\u00e9" * 5000, 10, wide).to_line()
    back = OutcomeReport.from_text(line)
    assert len(line) <= MAX_LINE_CHARS and back.files_failed == 10 and 1 <= len(back.failures) < 10
    # A line without failures reads as none (an older driver's line, too).
    assert OutcomeReport.from_text('PRISM_OUTCOME {"outcome": "Failed", "message": "x"}').failures == ()


def test_the_last_verdict_line_wins_and_garbage_is_ignored():
    first, last = OutcomeReport(Outcome.FAILED, "a").to_line(), OutcomeReport(Outcome.SUCCEEDED).to_line()
    text = f"{first}\n{OUTCOME_MARKER} {{not json}}\n{last}\n{OUTCOME_MARKER} {{\"outcome\": \"Nope\"}}\n"
    assert OutcomeReport.from_text(text) == OutcomeReport(Outcome.SUCCEEDED)
    assert OutcomeReport.from_text("no verdict here") is None


def test_a_failure_line_round_trips_and_other_lines_are_not_failures():
    from prism_api.failed_file import FAILURE_LINE_PREFIX, FailedFile

    failed = FailedFile("s3://b/odd name\n\udcff.pdf", "decode", "EOF marker not found\nline 2")
    line = failed.to_line()
    assert line.startswith(FAILURE_LINE_PREFIX) and "\n" not in line and line.isascii()
    assert FailedFile.from_line("  " + line + "\n") == failed
    for other in ("PRISM_FAILURE {not json}", 'PRISM_FAILURE {"uri": "a", "stage": 1, "error": "x"}',
                  "PRISM_OUTCOME {}", "prism: job failed", ""):
        assert FailedFile.from_line(other) is None, other
