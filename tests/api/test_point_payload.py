"""The point payload contract: the failure fields' writer and parser agree, reasons are bounded, and
the filter for items to reprocess is the JSON a user can send Qdrant."""

from __future__ import annotations

import json

from prism_api import point_payload as PP
from prism_api.point_payload import ExtractorFailure, failed_filter, failure_fields, failures_of


def test_failures_round_trip_through_a_json_payload():
    written = failure_fields([ExtractorFailure("ocr", "RuntimeError: out of memory"),
                              ExtractorFailure("digest", "ValueError: cannot digest poison")])
    assert written == {"failed_extractors": ["digest", "ocr"],
                       "failure_reasons": {"digest": "ValueError: cannot digest poison",
                                           "ocr": "RuntimeError: out of memory"}}
    payload = json.loads(json.dumps({"uri": "/a.txt", **written}))  # as Qdrant stores and returns it
    assert failures_of(payload) == [ExtractorFailure("digest", "ValueError: cannot digest poison"),
                                    ExtractorFailure("ocr", "RuntimeError: out of memory")]


def test_a_complete_item_carries_empty_fields_and_reads_back_as_no_failures():
    assert failure_fields([]) == {"failed_extractors": [], "failure_reasons": {}}
    assert failures_of(failure_fields([])) == []
    assert failures_of({"uri": "/written-before-these-fields.txt"}) == []


def test_reasons_are_one_bounded_line_and_the_first_per_extractor_wins():
    long = "Traceback:\n" + "x" * 5000
    written = failure_fields([ExtractorFailure("ocr", long), ExtractorFailure("ocr", "a second item's reason")])
    reason = written["failure_reasons"]["ocr"]
    assert len(reason) == PP.MAX_REASON_CHARS and reason.endswith("...") and "\n" not in reason
    assert reason.startswith("Traceback: xxx")
    assert written["failed_extractors"] == ["ocr"]
    assert failures_of(written)[0].reason == reason


def test_a_malformed_payload_reads_as_no_failures_not_an_error():
    assert failures_of({"failed_extractors": "ocr", "failure_reasons": {}}) == []
    assert failures_of({"failed_extractors": ["ocr"]}) == [ExtractorFailure("ocr", "")]


def test_the_reprocess_filter_is_plain_qdrant_json_on_the_indexed_field():
    assert failed_filter() == {"must_not": [{"is_empty": {"key": "failed_extractors"}}]}
    assert failed_filter("ocr") == {"must": [{"key": "failed_extractors", "match": {"value": "ocr"}}]}
    assert PP.FAILED_EXTRACTORS in PP.KEYWORD_INDEXES and PP.URI in PP.KEYWORD_INDEXES
    json.dumps(failed_filter("ocr"))
