"""A pipeline run over an s3:// source served by a real S3-compatible server (moto's server mode):
the driver lists through it, and Ray read tasks fetch from it."""

from __future__ import annotations

import pytest

from prism_pipeline.pipeline import run_job
from tests.sources.conftest import BUCKET, PREFIX, aws_env, s3_endpoint  # noqa: F401 (fixtures)

from .conftest import TEXT, spec_for

pytestmark = pytest.mark.slow


def test_pipeline_reads_documents_from_s3(ray_session, s3_endpoint, tmp_path):  # noqa: F811
    source = {"uri": f"s3://{BUCKET}/{PREFIX}/", "endpoint": s3_endpoint, "include": ["docs/**"]}
    spec = spec_for(source["uri"], "from-s3", [TEXT], source=source)
    result = run_job("from-s3", spec, state_dir=tmp_path / "state")

    assert result.ok, result.message
    assert result.tracker.files_total == result.tracker.totals.files_done == 4
    assert result.tracker.totals.decodes == 4 and result.tracker.totals.bytes_read > 0
    from prism_pipeline.sink.embedded import embedded_client

    points, _ = embedded_client(tmp_path / "state").scroll("from-s3", limit=100, with_payload=True)
    assert points and all(p.payload["uri"].startswith(f"s3://{BUCKET}/{PREFIX}/docs/") for p in points)
    assert result.tracker.totals.items["text"] == len(points)
