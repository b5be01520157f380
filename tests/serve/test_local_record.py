"""LocalServiceRecord, what `prism serve` writes and `prism search` reads: the model's round trip, the
file's writer (prism_pipeline.serve.local) and reader (prism_cli.service_client). No Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from prism_api.search_service import LocalServiceRecord, local_service_path
from prism_pipeline.serve import local

RECORD = LocalServiceRecord(url="http://127.0.0.1:8123", pid=4242, collection="quickstart", app="search",
                            ray_address="192.0.2.2:6379", started_at="2026-12-03T07:44:17+00:00")


def test_round_trip_on_the_wire():
    wire = RECORD.to_wire()
    assert wire == {"url": "http://127.0.0.1:8123", "pid": 4242, "collection": "quickstart", "app": "search",
                    "rayAddress": "192.0.2.2:6379", "startedAt": "2026-12-03T07:44:17+00:00"}
    assert LocalServiceRecord.model_validate(json.loads(json.dumps(wire))) == RECORD
    server = RECORD.model_copy(update={"qdrant_url": "http://q:6333"})
    assert LocalServiceRecord.model_validate(server.to_wire()).qdrant_url == "http://q:6333"


@pytest.mark.parametrize("change, field", [
    ({"url": "not a url"}, "url"), ({"pid": 0}, "pid"), ({"collection": "Bad Name"}, "collection"),
    ({"surprise": 1}, "surprise"),
])
def test_a_bad_record_is_refused(change, field):
    with pytest.raises(ValidationError) as err:
        LocalServiceRecord.model_validate({**RECORD.to_wire(), **change})
    assert field in str(err.value)


def test_written_where_search_looks_and_removed_only_by_its_writer(tmp_path):
    path = local.write_record(tmp_path, RECORD)
    assert path == tmp_path / "serve" / "quickstart.json" == local_service_path(tmp_path, "quickstart")
    assert local.read_record(tmp_path, "quickstart") == RECORD
    assert [p.name for p in path.parent.iterdir()] == ["quickstart.json"]  # no partial file left behind
    local.remove_record(path, pid=1)  # another process's record stays
    assert path.exists()
    local.remove_record(path, pid=RECORD.pid)
    assert not path.exists() and local.read_record(tmp_path, "quickstart") is None


def test_an_unwritable_state_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(local.ServeStartError, match=r"cannot record the running service in .*; pass a writable"):
        local.write_record(blocker, RECORD)


def test_a_live_service_is_refused_a_stale_one_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = local.write_record(tmp_path, RECORD.model_copy(update={"pid": proc.pid}))
    local._refuse_running(tmp_path, "quickstart")  # its process is gone: stale
    assert not path.exists()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        local.write_record(tmp_path, RECORD.model_copy(update={"pid": holder.pid}))
        with pytest.raises(local.ServeStartError, match=f"already served at http://127.0.0.1:8123 by process "
                                                        f"{holder.pid}"):
            local._refuse_running(tmp_path, "quickstart")
    finally:
        holder.kill()
        holder.wait()


def test_a_port_in_use_is_refused_before_ray_starts():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(local.ServeStartError, match=f"cannot listen on 127.0.0.1:{port} .*pass another --port"):
            local._check_port("127.0.0.1", port)


def test_pid_alive():
    assert local.pid_alive(os.getpid())
