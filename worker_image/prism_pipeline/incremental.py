"""Incremental runs: skip files whose content and extractor versions are already in the sink.

When every item of a file is written, the driver records the file in the sink (Sink.record:
{uri, content_hash, fingerprint, items, run_key}). `run_key` hashes everything that shapes the points:
the preprocess settings and each extractor's kind, version and options. `fingerprint` is what the
listing said about the file (local size + modification time, S3 ETag, GCS generation).

The next run looks the records up page by page as the listing streams (Sink.records, one batched
lookup per page, on the listing thread while the stream runs) and decides each file (Plan.decide):
- its record is complete, of this run's key, and its fingerprint equals the listed one: skipped from
  the listing alone, no byte read, never sent into the stream;
- its record is complete and of this run's key, but the fingerprint differs or is unknown (a record
  from before fingerprints, a touched or copied file): sent to its read task with the recorded hash,
  which hashes the fetched bytes and skips the decode on a match (the record then gets the new
  fingerprint, so the next run skips it from the listing);
- otherwise it is extracted.

A file whose hash changed gets its old points deleted once its new points are written (Written.recorded_hash).

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
from typing import Any, NamedTuple

from prism_api import ExtractionJobSpec
from prism_pipeline.extractors import Extractor
from prism_pipeline.ledger import Pending
from prism_pipeline.sink.file_records import FAILED_STAGE, FINGERPRINT
from prism_pipeline.sources import FileRef


def run_key(spec: ExtractionJobSpec, extractors: list[Extractor]) -> str:
    blob = json.dumps({
        "preprocess": spec.preprocess.point_settings(),  # not the decode bounds: they shape no point
        "extractors": sorted([ex.name, ex.spec.kind, ex.fingerprint()] for ex in extractors),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Decision(NamedTuple):
    """What a run does with one listed file."""

    unchanged: bool   # skipped from the listing alone: nothing is read
    prev_hash: str    # the hash its read task skips the decode on ("" to always extract)
    pending: Pending  # what the driver holds while the file is in the stream


@dataclass(frozen=True)
class Plan:
    """How a run treats the records of earlier runs."""

    key: str           # this run's run_key, recorded with every file it finishes
    incremental: bool  # spec.incremental: skip what is recorded complete with this key

    def decide(self, ref: FileRef, record: dict[str, Any] | None) -> Decision:
        """The file's fate from its listing entry and its record (None: never recorded). Stale points
        are cleaned up even when spec.incremental is off: a full run rewrites every file."""
        if record is None:
            return Decision(False, "", Pending(ref.fingerprint))
        recorded = str(record.get("content_hash") or "")
        pending = Pending(ref.fingerprint, recorded, int(record.get("items") or 0))
        complete = self.incremental and record.get("run_key") == self.key and not record.get(FAILED_STAGE)
        if complete and ref.fingerprint and record.get(FINGERPRINT) == ref.fingerprint:
            return Decision(True, recorded, pending)
        return Decision(False, recorded if complete else "", pending)


def plan(spec: ExtractionJobSpec, extractors: list[Extractor]) -> Plan:
    return Plan(key=run_key(spec, extractors), incremental=bool(spec.incremental))
