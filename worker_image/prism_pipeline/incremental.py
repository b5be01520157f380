"""Incremental runs: skip files whose content and extractor versions are already in the sink.

When every item of a file is written, the driver records the file in the sink (Sink.record:
{uri, content_hash, items, run_key}). `run_key` hashes everything that shapes the points: the
preprocess settings and each extractor's kind, version and options. The next run looks up the
records of every listed uri (Sink.records) and hands each file's recorded hash to its read task,
which hashes the fetched bytes and skips the decode on a match. So a re-run reads bytes but decodes
nothing; the listing gives no content fingerprint (size alone would miss same-size edits), and the
bytes must be hashed anyway to name the points.

A file whose hash changed gets its old points deleted once its new points are written (Plan.is_stale).

A file that did not finish cleanly is never skipped. One that could not be read or decoded has no
new record. One whose items all came through but failed (an extractor failed on one of its items:
its points are written, naming the failed extractors, prism_api.point_payload) is recorded with
the stage it failed at, and only complete records are skipped on: the next run extracts the whole
file again, overwriting its points (same ids) and so clearing their marks. Until then its record
names the points a later content change makes stale.
This module is the pure part; the sink does the lookups and writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prism_api import ExtractionJobSpec
from prism_pipeline.extractors import Extractor
from prism_pipeline.sink.file_records import FAILED_STAGE


def run_key(spec: ExtractionJobSpec, extractors: list[Extractor]) -> str:
    blob = json.dumps({
        "preprocess": spec.preprocess.point_settings(),  # not the decode bounds: they shape no point
        "extractors": sorted([ex.name, ex.spec.kind, ex.fingerprint()] for ex in extractors),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def previous_hashes(records: dict[str, dict[str, Any]], key: str) -> dict[str, str]:
    """The hashes a read task may skip on: only complete records written with the same run key."""
    return {uri: r["content_hash"] for uri, r in records.items()
            if r.get("run_key") == key and not r.get(FAILED_STAGE)}


@dataclass(frozen=True)
class Plan:
    """What a run takes from the records of earlier runs."""

    key: str                   # this run's run_key, recorded with every file it finishes
    skip_if: dict[str, str]    # uri -> the hash a read task skips the file on (empty when not incremental)
    recorded: dict[str, str]   # uri -> the hash any earlier run recorded (whatever its run key)

    def is_stale(self, uri: str, content_hash: str) -> bool:
        """Whether finishing `uri` with `content_hash` leaves older points of the file behind."""
        return uri in self.recorded and self.recorded[uri] != content_hash


def plan(spec: ExtractionJobSpec, extractors: list[Extractor], records: dict[str, dict[str, Any]]) -> Plan:
    """The plan for a run, from the file records of its listed uris. Stale points are cleaned up
    even when spec.incremental is off: a full run rewrites every file."""
    key = run_key(spec, extractors)
    return Plan(key=key, skip_if=previous_hashes(records, key) if spec.incremental else {},
                recorded={uri: r["content_hash"] for uri, r in records.items()})
