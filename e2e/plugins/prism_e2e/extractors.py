"""Two plug-in extractors that make the e2e suite's jobs behave deterministically on a real cluster.

- `Pace` sleeps per item, so a job runs long enough for the suite to watch progress rise, suspend
  it and delete it while it runs.
- `FailFirstAttempt` makes attempt 1 of a job fail and every later attempt succeed, so the suite
  can check that a retry is a new RayJob on the same RayCluster.

They are used as `kind: "python: prism_e2e.extractors:Pace"` and need nothing beyond the pipeline.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from prism_api.conventions import ATTEMPT_LABEL
from prism_pipeline.extractors.base import MODALITIES, Extractor, Payload

# Set by Ray's job supervisor for the driver process only (ray/_private/runtime_env/constants.py):
# the job's config, whose metadata holds the RayJob's spec.metadata and the submission id.
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
ATTEMPT_METADATA_KEY = ATTEMPT_LABEL  # the RayJob sets it on its submission metadata
SUBMISSION_ID_KEY = "job_submission_id"
# The operator names the RayJob (and so the Ray submission id) <cluster>-a<attempt>.
_ATTEMPT_SUFFIX = re.compile(r"-a(\d+)$")
MAX_SECONDS_PER_ITEM = 60.0


def current_attempt(environ: dict[str, str] | None = None) -> int | None:
    """The ExtractionJob attempt this process runs, or None outside a Ray job driver."""
    env = os.environ if environ is None else environ
    raw = env.get(RAY_JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    value = str(metadata.get(ATTEMPT_METADATA_KEY, "")).strip()
    if value.isdigit():
        return int(value)
    match = _ATTEMPT_SUFFIX.search(str(metadata.get(SUBMISSION_ID_KEY, "")))
    return int(match.group(1)) if match else None


class Pace(Extractor):
    """Sleeps `options.secondsPerItem` per item and records it; outputs nothing else."""

    modalities = MODALITIES
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        seconds = self.option("secondsPerItem", 1.0, (int, float))
        if not 0 <= seconds <= MAX_SECONDS_PER_ITEM:
            raise ValueError(f"extractor {self.name!r}: options.secondsPerItem must be between 0 and "
                             f"{MAX_SECONDS_PER_ITEM:g} (got {seconds})")
        self.seconds = float(seconds)

    def __call__(self, items: list[dict]) -> list[Any]:
        time.sleep(self.seconds * len(items))
        return [{"secondsPerItem": self.seconds} for _ in items]


class FailFirstAttempt(Extractor):
    """Raises while the pipeline's driver builds it during attempt 1; a no-op payload otherwise.

    The driver constructs every extractor before the pipeline starts, so attempt 1 fails before it
    writes anything and the RayJob ends FAILED. Actors run outside the driver and never fail.
    """

    modalities = frozenset({"text"})
    output = Payload()

    def __init__(self, spec):
        super().__init__(spec)
        self.attempt = current_attempt()
        if self.attempt == 1:
            raise RuntimeError(f"extractor {self.name!r}: attempt 1 fails on purpose (prism e2e retry test); "
                               "the next attempt succeeds")

    def __call__(self, items: list[dict]) -> list[Any]:
        return [{"ok": True} for _ in items]
