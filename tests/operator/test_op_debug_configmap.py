"""The `<job>-debug` ConfigMap builder: the failed files parsed out of the driver log's PRISM_FAILURE
lines, the log's tail, and the bounds that keep it far under a ConfigMap's 1 MiB whatever the log."""

from __future__ import annotations

import copy
import json

import pytest

from prism_api import parse_job
from prism_api.failed_file import MAX_ERROR_CHARS, FailedFile
from prism_operator.builders.debug_configmap import (
    CUT_ANNOTATION,
    FAILED_FILES_ANNOTATION,
    FAILURES_KEY,
    FAILURES_MAX_BYTES,
    LINE_MAX_CHARS,
    TAIL_KEY,
    TAIL_LINE_MAX_CHARS,
    TAIL_LINES,
    DriverLogDigest,
    build_debug_config_map,
    debug_record,
    owned_by,
    parse_failure,
)

from .conftest import BASE_JOB

CONFIG_MAP_LIMIT = 1024 * 1024


def job():
    body = copy.deepcopy(BASE_JOB)
    body["metadata"]["uid"] = "u1"
    return parse_job(body, target="cluster")


def failure_line(uri: str, stage: str = "decode", error: str = "not a PDF") -> str:
    """As the driver prints it (prism_pipeline.runner: `"PRISM_FAILURE " + json.dumps(f.__dict__)`)."""
    return "PRISM_FAILURE " + json.dumps(FailedFile(uri, stage, error).__dict__)


def digest_of(*chunks: str) -> DriverLogDigest:
    digest = DriverLogDigest()
    for chunk in chunks:
        digest.feed(chunk)
    return digest.finish()


def build(digest: DriverLogDigest, read_cut: str = "") -> dict:
    return build_debug_config_map(job(), digest, ray_job="campaign-1a2b3-a1", saved_time="2026-11-22T12:00:00Z",
                                  read_cut=read_cut)


def size(config_map: dict) -> int:
    return len(json.dumps(config_map, ensure_ascii=False).encode())


def jsonl(config_map: dict) -> list[dict]:
    return [json.loads(line) for line in config_map["data"][FAILURES_KEY].splitlines()]


LOG = "\n".join([
    "2026-11-22 11:58:01 INFO -- Started a local Ray instance.",
    "\x1b[36m(MapWorker(TextEmbedding) pid=4242)\x1b[0m loading model",
    failure_line("file:///m/broken-0.pdf"),
    failure_line("file:///m/broken-1.pdf", error="EOF marker not found"),
    "prism: job campaign failed: 2 of 4 files failed, above failurePolicy.maxFailedFileRatio 0.2",
    'PRISM_OUTCOME {"outcome": "TooManyFailedFiles"}',
]) + "\n"


def test_the_failed_files_and_the_tail_of_a_driver_log():
    cm = build(digest_of(LOG))
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    meta = cm["metadata"]
    assert (meta["name"], meta["namespace"]) == ("campaign-debug", "media")
    assert meta["labels"]["app.kubernetes.io/component"] == "debug"
    assert meta["labels"]["prism.dev/extraction-job"] == "campaign"
    assert meta["ownerReferences"][0]["uid"] == "u1"  # goes with the ExtractionJob, not the RayCluster
    assert jsonl(cm) == [{"uri": "file:///m/broken-0.pdf", "stage": "decode", "error": "not a PDF"},
                         {"uri": "file:///m/broken-1.pdf", "stage": "decode", "error": "EOF marker not found"}]
    tail = cm["data"][TAIL_KEY].splitlines()
    assert len(tail) == 6 and tail[1] == "(MapWorker(TextEmbedding) pid=4242) loading model"  # colours stripped
    assert meta["annotations"][FAILED_FILES_ANNOTATION] == "2" and meta["annotations"][CUT_ANNOTATION] == ""
    record = debug_record({**cm, "metadata": {**meta, "creationTimestamp": "x"}})
    assert (record.config_map, record.failed_files, record.saved_time, record.message) == (
        "campaign-debug", 2, "2026-11-22T12:00:00Z", "")


@pytest.mark.parametrize("size_", [1, 3, 17, 4096])
def test_chunks_split_anywhere_give_the_same_digest(size_):
    whole = build(digest_of(LOG))
    pieces = [LOG[i:i + size_] for i in range(0, len(LOG), size_)]
    assert build(digest_of(*pieces)) == whole


def test_only_prism_failure_lines_that_carry_a_failed_file_count():
    assert parse_failure("  \x1b[1m" + failure_line("s3://b/a.mp4", "read", "403") + "\r") == FailedFile(
        "s3://b/a.mp4", "read", "403")
    assert parse_failure("INFO: the driver printed PRISM_FAILURE lines") is None
    assert parse_failure('PRISM_FAILURE {"uri": "x"') is None
    assert parse_failure('PRISM_FAILURE {"uri": "x", "stage": "decode"}') is None
    assert parse_failure('PRISM_FAILURE {"uri": 1, "stage": "decode", "error": "e"}') is None
    assert parse_failure('PRISM_FAILURE ["x", "decode", "e"]') is None
    digest = digest_of(failure_line("a") + "\nPRISM_FAILURE {not json}\n(worker) PRISM_FAILURE is a word here\n")
    assert [f.uri for f in digest.failures] == ["a"]
    assert (digest.failures_listed, digest.failures_unreadable) == (2, 1)
    assert "1 PRISM_FAILURE lines were not a failed file's JSON" in build(digest)["metadata"]["annotations"][
        CUT_ANNOTATION]


def test_a_failed_file_is_bounded_as_status_bounds_it():
    (failure,) = digest_of(failure_line("u", error="x" * 50_000) + "\n").failures
    assert len(failure.error) == MAX_ERROR_CHARS
    # A line too long to keep whole is not a failed file: counted, clipped in the tail.
    digest = digest_of(failure_line("u", error="x" * (LINE_MAX_CHARS + 1)) + "\n")
    assert (digest.failures_listed, digest.failures_unreadable) == (1, 1)


def test_many_failures_and_a_huge_log_stay_far_under_a_config_maps_limit():
    lines = [failure_line(f"s3://media/very/long/path/{'x' * 300}/{i}.mp4", "read", "e" * 500) for i in range(5000)]
    noise = ["y" * 100_000] * 300  # long lines, arriving in one piece
    digest = digest_of("\n".join(lines) + "\n", "\n".join(noise), "\nlast line without a newline")
    cm = build(digest, read_cut="only the first 64 MiB of the log were read")
    assert size(cm) < 700 * 1024 < CONFIG_MAP_LIMIT
    kept = jsonl(cm)
    assert 0 < len(kept) < 5000 and len(cm["data"][FAILURES_KEY].encode()) <= FAILURES_MAX_BYTES
    assert kept[0]["uri"].endswith("/0.mp4") and kept[-1]["uri"].endswith(f"/{len(kept) - 1}.mp4")  # the first ones
    tail = cm["data"][TAIL_KEY].splitlines()
    assert tail[-1] == "last line without a newline" and len(tail) <= TAIL_LINES
    assert all(len(line) <= TAIL_LINE_MAX_CHARS + len(" [line clipped]") for line in tail)
    note = cm["metadata"]["annotations"][CUT_ANNOTATION]
    assert "only the first 64 MiB" in note and f"keeps the first {len(kept)} of 5000 failed files" in note
    assert f"of {5000 + 300 + 1} lines" in note and "long lines clipped" in note
    assert cm["metadata"]["annotations"][FAILED_FILES_ANNOTATION] == "5000"


def test_the_tail_is_the_last_two_hundred_lines():
    digest = digest_of("".join(f"line {i}\n" for i in range(1000)))
    tail = build(digest)["data"][TAIL_KEY].splitlines()
    assert tail == [f"line {i}" for i in range(800, 1000)]


def test_text_that_was_not_utf8_or_printable_is_stored_as_valid_utf8():
    garbage = b"\xff\xfe caf\xc3\xa9 \x00 \x07 bell".decode("utf-8", "replace")
    log = (f"{garbage}\r\n"
           "lone surrogate \udcff here\n"            # what surrogateescape makes of a stray byte
           "tab\tstays, \x1b]0;title\x07 escape goes\n"
           + failure_line("file:///m/\udcffbad-name.pdf", error="caf\u00e9 \x00 crashed") + "\n")
    cm = build(digest_of(log))
    text = cm["data"][TAIL_KEY]
    text.encode("utf-8")  # strict: nothing a ConfigMap would refuse
    cm["data"][FAILURES_KEY].encode("utf-8")
    assert "café" in text and "\x00" not in text and "\x07" not in text and "\r" not in text
    assert "tab\tstays" in text and "\udcff" not in text
    (failure,) = jsonl(cm)
    assert failure["uri"] == "file:///m/\ufffdbad-name.pdf" and failure["error"] == "caf\u00e9 \ufffd crashed"


def test_an_empty_log_still_says_what_it_holds():
    cm = build(digest_of(""))
    assert cm["data"] == {FAILURES_KEY: "", TAIL_KEY: ""}
    assert cm["metadata"]["annotations"][FAILED_FILES_ANNOTATION] == "0"


def test_only_this_jobs_config_map_is_its_record():
    cm = build(digest_of(LOG))
    assert owned_by(cm, job())
    other = copy.deepcopy(cm)
    other["metadata"]["ownerReferences"][0]["uid"] = "a-deleted-namesake"
    assert not owned_by(other, job()) and not owned_by(None, job())
