"""app.build()'s parts without starting Serve: the arguments (a bad one names its field), the record
read from the embedded store or a server, the version check, and the Serve options each deployment
gets (autoscaling, resources, never the `batch` resource)."""

from __future__ import annotations

import pytest

from prism_api import ExtractorSpec, QdrantSink
from prism_api.conventions import BATCH_RESOURCE
from prism_api.search_service import ServeAppArgs, ServeDeployment
from prism_pipeline.serve.app import INGRESS_NAME, deployment_options, ingress_options, parse_args, plan
from prism_pipeline.serve.model_deployment import ModelVersionMismatch, check_versions, servable_entries
from tests.pipeline.stores import DOCS, OlderTextEmbedding, item_rows, text_extractor, write_store

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    state = tmp_path_factory.mktemp("build") / "state"
    write_store(state)
    return state


@pytest.mark.parametrize(("args", "message"), [
    ({"collection": "docs"}, "args: give exactly one of qdrantUrl (a Qdrant server) and stateDir"),
    ({"collection": "docs", "stateDir": "s", "qdrantUrl": "http://q:6333"}, "args: give exactly one of"),
    ({"collection": "Bad Name", "stateDir": "s"}, "args.collection:"),
    ({"collection": "docs__prism_files", "stateDir": "s"}, "args.collection: must not contain '__prism'"),
    ({"collection": "docs", "qdrantUrl": "ftp://q"}, "args.qdrantUrl:"),
    ({"collection": "docs", "stateDir": "s", "deployments": [{"extractor": "text", "replicas": {"min": 3, "max": 1}}]},
     "args.deployments[0].replicas: min (3) must be <= max (1)"),
    ({"collection": "docs", "stateDir": "s", "deployments": [{"extractor": "text"}, {"extractor": "text"}]},
     "args.deployments: extractor 'text' listed more than once"),
    ({"collection": "docs", "stateDir": "s", "deployments": [{"extractor": "text", "resources": {"gpu": -1}}]},
     "args.deployments[0].resources.gpu:"),
    ({"collection": "docs", "stateDir": "s", "colour": "red"}, "args.colour:"),
    (["docs"], "args: must be a mapping of ServeAppArgs (got list)"),
])
def test_a_bad_argument_names_its_field(args, message):
    with pytest.raises(ValueError) as err:
        parse_args(args)
    assert message in str(err.value), str(err.value)


def test_the_state_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_args({"collection": "docs", "stateDir": ".prism"}).state_dir == str(tmp_path / ".prism")


def test_plan_reads_the_record_and_releases_the_store(state):
    from prism_pipeline.sink.embedded import _CLIENTS, store_path

    args, found = plan({"collection": "docs", "stateDir": str(state)})
    assert [(s.recorded["name"], s.inputs) for s in found] == [("text", ("text",))]
    assert found[0].model.version == text_extractor().version
    assert str(store_path(state)) not in _CLIENTS, "the ingress replica must be able to open the store"


@pytest.mark.parametrize(("args", "message"), [
    ({"collection": "nope"}, "args.collection 'nope' (args.stateDir): no Prism collection 'nope' (collections here: docs)"),
    ({"collection": "docs", "deployments": [{"extractor": "visual"}]},
     "args.deployments: 'visual' not served by collection 'docs' (its embedding extractors: text)"),
])
def test_plan_names_what_is_not_there(state, args, message):
    with pytest.raises(ValueError) as err:
        plan({"stateDir": str(state), **args})
    assert str(err.value) == message


def test_a_missing_store_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"args.stateDir\): no embedded store under .*; run `prism run"):
        plan({"collection": "docs", "stateDir": str(tmp_path / "nowhere")})
    assert not (tmp_path / "nowhere").exists()


def test_a_collection_with_nothing_to_serve(tmp_path):
    from prism_pipeline.extractors import build
    from prism_pipeline.sink import Sink
    from prism_pipeline.sink.embedded import close_embedded

    faces = build(ExtractorSpec(name="faces", kind="face-detection"))
    with Sink(QdrantSink(collection="faces-only"), [faces], tmp_path / "state") as sink:
        sink.prepare()
    close_embedded(tmp_path / "state")
    with pytest.raises(ValueError, match=r"no extractor of it embeds queries .*nothing to serve"):
        plan({"collection": "faces-only", "stateDir": str(tmp_path / "state")})


def test_another_recorded_version_fails_before_anything_is_bound(tmp_path):
    older = OlderTextEmbedding(ExtractorSpec(name="text", kind="text-embedding"))
    write_store(tmp_path / "state", extractors=[older])
    with pytest.raises(ModelVersionMismatch) as err:
        plan({"collection": "docs", "stateDir": str(tmp_path / "state")})
    assert str(err.value) == (
        f"extractor 'text' (text-embedding): the collection was written with model version {older.version}, but "
        f"this image loads {text_extractor().version}; queries embedded by another version would not match the "
        f"points. Serve it from an image with {older.version} installed (the worker image the ExtractionJob ran "
        "on), or re-run the ExtractionJob into a new collection with this version")


def test_check_versions_serves_query_kinds_only():
    record = [
        {"name": "faces", "kind": "face-detection", "model": None, "version": "x", "options": {}, "output": "payload"},
        {"name": "text", "kind": "text-embedding", "model": None, "version": text_extractor().version, "options": {},
         "output": "vector", "size": 384},
    ]
    assert [e["name"] for e in servable_entries(record)] == ["text"]
    assert check_versions(record) == [{"extractor": "text", "kind": "text-embedding", "model": None,
                                       "version": text_extractor().version}]


def test_plan_reads_a_server():
    from prism_pipeline import rows as R
    from prism_pipeline.sink import Sink, point_fields
    from prism_pipeline.sink.server import QdrantWriter
    from tests.pipeline.qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    try:
        extractors = [text_extractor()]
        with Sink(QdrantSink(collection="docs", url=server.url), extractors) as sink:
            sink.prepare()
        QdrantWriter(url=server.url, collection="docs", timeout_s=10, **point_fields(extractors))(
            R.to_batch(item_rows(DOCS)))
        args, found = plan({"collection": "docs", "qdrantUrl": server.url, "timeoutSeconds": 5})
        assert args.qdrant_url == server.url and [s.recorded["name"] for s in found] == ["text"]
        assert ingress_options(args)["autoscaling_config"]["max_replicas"] > 1
    finally:
        server.close()


def test_deployment_options_never_ask_for_batch():
    settings = ServeDeployment.model_validate({
        "extractor": "visual", "replicas": {"min": 2, "max": 5}, "targetOngoingRequests": 3,
        "maxOngoingRequests": 32, "maxBatchSize": 24, "batchWaitTimeoutMs": 20,
        "resources": {"cpu": 2, "gpu": 0.5, "memory": "4Gi"}})
    options = deployment_options(settings)
    assert options == {
        "name": "visual",
        "autoscaling_config": {"min_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 3},
        "max_ongoing_requests": 32,
        "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.5, "memory": 4 * 2**30},
        "user_config": {"max_batch_size": 24, "batch_wait_timeout_s": 0.02},
    }
    assert BATCH_RESOURCE not in options["ray_actor_options"] and "resources" not in options["ray_actor_options"]


def test_the_embedded_store_gets_one_ingress():
    args = ServeAppArgs(collection="docs", state_dir="/s")
    options = ingress_options(args)
    assert options["name"] == INGRESS_NAME == "Ingress" and options["num_replicas"] == 1
    assert "autoscaling_config" not in options and "resources" not in options["ray_actor_options"]
