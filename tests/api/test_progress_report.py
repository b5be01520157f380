"""The progress report's wire format (prism_api.progress_report): what the pipeline writes, the operator
reads back whole; the reader keeps only its own job's attempt; the text is real Prometheus format
(checked with prometheus_client's own parser); bad text is refused."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prism_api.outcome import Outcome
from prism_api.progress_report import (
    MAX_FAILURE_SAMPLES,
    Counts,
    FailedFile,
    ProgressFormatError,
    ProgressReport,
    ReportIdentity,
    parse_prometheus,
)

ME = ReportIdentity("campaign", "media", 2)
ODD = 'quotes " backslash \\ newline \n ünïcode, commas = and {braces}'


def full_report() -> ProgressReport:
    report = ProgressReport(ME, files_total=12, start_time=1764633600.25)
    report.add(Counts(files_done=7, files_failed=2, files_skipped=1, points_written=40, bytes_read=123456789,
                      decodes=9, cpu_seconds=12.5, gpu_seconds=0.125, items={"text": 30, ODD: 3},
                      items_failed={"faces": 2}),
               [FailedFile("s3://b/x.pdf", "decode", ODD), FailedFile("s3://b/y.mp4", "faces", "CUDA OOM")])
    report.set_outcome(Outcome.TOO_MANY_FAILED_FILES, "2 of 12 files failed: " + ODD)
    report.finished = True
    return report


def test_everything_round_trips():
    report = full_report()
    back = ProgressReport.from_prometheus(report.to_prometheus(), ME)
    assert back == report


def test_an_empty_report_round_trips():
    report = ProgressReport(ME)
    assert ProgressReport.from_prometheus(report.to_prometheus(), ME) == report


def test_the_text_is_prometheus_format_with_every_sample_labelled():
    text = full_report().to_prometheus()
    families = list(text_string_to_metric_families(text))
    samples = [s for f in families for s in f.samples]
    assert len(samples) == len(parse_prometheus(text)) > 10
    assert all({k: s.labels[k] for k in ("job", "namespace", "attempt")} ==
               {"job": "campaign", "namespace": "media", "attempt": "2"} for s in samples)
    by_name = {(s.name, s.labels.get("extractor")): s.value for s in samples}
    assert by_name[("prism_items_total", ODD)] == 3  # escapes agree with the reference parser
    assert {f.name: f.type for f in families}["prism_files_done"] == "counter"


def test_parse_prometheus_agrees_with_the_reference_parser_on_its_escapes():
    text = ('# HELP x A metric.\n# TYPE x gauge\n'
            'x{a="q\\"uote",b="back\\\\slash",c="new\\nline",} 1.5e3 1700000000000\n'
            'y 2\nz{a="1"} NaN\nw{a="1"} +Inf\n')
    ours = parse_prometheus(text)
    ref = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
           if s.value == s.value]  # NaN is skipped by ours
    assert ours == ref


@pytest.mark.parametrize("other", [
    ReportIdentity("someone-else", "media", 2),
    ReportIdentity("campaign", "elsewhere", 2),
    ReportIdentity("campaign", "media", 1),
])
def test_a_reader_keeps_only_its_own_job_and_attempt(other):
    mine, theirs = full_report(), ProgressReport(other, files_total=99, counts=Counts(files_done=98))
    assert ProgressReport.from_prometheus(theirs.to_prometheus(), ME) is None
    # On a shared endpoint (families interleaved), only this job's samples count.
    merged = theirs.to_prometheus() + "".join(
        line + "\n" for line in mine.to_prometheus().splitlines() if not line.startswith("#"))
    assert ProgressReport.from_prometheus(merged, ME) == mine


def test_samples_without_namespace_or_attempt_are_read_by_job_label():
    text = 'prism_files_total{job="campaign"} 4\nprism_files_done_total{job="campaign"} 1\nprism_files_total 99\n'
    report = ProgressReport.from_prometheus(text, ME)
    assert (report.files_total, report.counts.files_done) == (4, 1)


def test_an_unknown_verdict_is_dropped_and_unknown_metrics_ignored():
    text = ('prism_pipeline_outcome{job="campaign",outcome="SomethingNew"} 1\n'
            'prism_something_else_total{job="campaign"} 5\nprism_files_total{job="campaign"} 3\n')
    report = ProgressReport.from_prometheus(text, ME)
    assert report.outcome is None and report.files_total == 3


@pytest.mark.parametrize("garbage", ["prism_files_total{ 3\n", 'x{a="1" 2\n', "x one\n", "{}\n"])
def test_garbage_is_refused(garbage):
    with pytest.raises(ProgressFormatError):
        ProgressReport.from_prometheus(garbage, ME)


def test_failure_samples_are_bounded_and_the_driver_totals_win():
    report = ProgressReport(ME)
    many = [FailedFile(f"/f{i}", "decode", "x" * 5000) for i in range(25)]
    report.add(Counts(files_failed=25, cpu_seconds=3.0, items={"text": 5}), many)
    assert len(report.failures) == MAX_FAILURE_SAMPLES and len(report.failures[0].error) == 1024
    report.finish(Counts(files_failed=24, items={"text": 4}), many[:3], Outcome.FAILED, "stalled")
    assert (report.counts.files_failed, report.counts.items, report.counts.cpu_seconds) == (24, {"text": 4}, 3.0)
    assert len(report.failures) == 3 and report.finished and report.outcome is Outcome.FAILED


def test_counts_add_and_subtract():
    a = Counts(files_done=1, items={"text": 2})
    a += Counts(files_done=2, cpu_seconds=0.5, items={"text": 1, "faces": 4}, items_failed={"faces": 1})
    assert a == Counts(files_done=3, cpu_seconds=0.5, items={"text": 3, "faces": 4}, items_failed={"faces": 1})
    before = a.copy()
    a += Counts(files_failed=1, items={"faces": 1})
    assert a - before == Counts(files_failed=1, items={"faces": 1})
    assert (a - a).is_zero() and not Counts(decodes=1).is_zero()
    assert a.files_finished == 4
