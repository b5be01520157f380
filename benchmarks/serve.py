"""The online side beside the batch side, on one local Ray (started with the `batch` resource as
`prism run` starts it):

1. Query latency (p50, p99) and queries per second of `POST /search` over HTTP, a few concurrent
   clients, against the Serve application for a collection of the sample media (examples/media,
   text-embedding): alone, and while a batch job runs on the same Ray (in-process, then
   Serve-backed). The ratios beside/alone show how well the service is isolated from batch work.
2. A batch job's wall time with a Serve-backed text-embedding extractor (spec.extractors[].serve:
   the stage calls the application's warm `text` deployment) versus the in-process one (every job
   loads its own model), over a few hundred small text files, with no queries running.

Everything is measured in one run, side by side; figures are ratios against the run's own baseline.

    .venv/bin/python benchmarks/serve.py [--files 300] [--clients 4] [--seconds 20] [--max-in-flight 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prism_api import ExtractionJobSpec  # noqa: E402
from prism_api.conventions import BATCH_RESOURCE  # noqa: E402
from prism_api.search_service import ROUTE_SEARCH, SERVE_APP_NAME, ServeAppArgs  # noqa: E402
from prism_pipeline.pipeline import run_job  # noqa: E402
from prism_pipeline.runner import cpus_needed, quiet_ray_data  # noqa: E402
from prism_pipeline.sink.embedded import close_embedded  # noqa: E402

MEDIA = ROOT / "examples" / "media"
TEXT = {"name": "text", "kind": "text-embedding", "batchSize": 32}
SERVED = {**TEXT, "serve": {"app": SERVE_APP_NAME, "deployment": "text", "maxInFlight": 4, "timeoutSeconds": 120}}
QUERIES = ["how do bees make honey", "planets that orbit the sun", "how long to boil pasta",
           "molten rock and ash from a mountain", "the weather forecast for tomorrow"]
SENTENCES = ["Honeybees collect nectar and store honey in wax cells.", "The tide rises twice a day along the coast.",
             "A recipe calls for flour, butter, sugar and two eggs.", "The train left the station ten minutes late.",
             "Volcanic ash can ground aeroplanes for days.", "Jupiter is the largest planet in the solar system.",
             "The committee approved the budget for next year.", "Rain is expected in the north by the evening."]
HTTP_TIMEOUT_S = 30


def spec(uri: Path, collection: str, extractor: dict, **fields) -> ExtractionJobSpec:
    return ExtractionJobSpec.model_validate({"source": {"uri": str(uri), **fields.pop("source", {})},
                                             "extractors": [extractor], "sink": {"qdrant": {"collection": collection}},
                                             **fields})


def make_texts(folder: Path, count: int) -> Path:
    """`count` small distinct text files (a few sentences each)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        picked = rng.choice(len(SENTENCES), size=4, replace=False)
        (folder / f"note_{i:04d}.txt").write_text(f"Note {i}. " + " ".join(SENTENCES[j] for j in picked))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(url: str, text: str) -> float:
    body = json.dumps({"text": text, "limit": 5}).encode()
    request = urllib.request.Request(url + ROUTE_SEARCH, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        hits = json.loads(response.read())["hits"]
    if not hits:
        raise RuntimeError(f"no hits for {text!r}")
    return time.perf_counter() - started


def load(url: str, clients: int, until) -> dict:
    """`clients` threads sending queries back to back until `until()` is true; latency and rate."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        i = n
        while not until():
            try:
                took = query(url, QUERIES[i % len(QUERIES)])
                with lock:
                    latencies.append(took)
            except Exception as err:  # counted, shown
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"queries": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": round(seconds, 1), "qps": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def job_beside(url: str, clients: int, job_spec: ExtractionJobSpec, state: Path, name: str) -> tuple[dict, float]:
    """Run a job in a thread and load the service until it ends: (query stats, job wall seconds)."""
    done = threading.Event()
    outcome: dict = {}

    def job() -> None:
        try:
            outcome["result"] = run_job(name, job_spec, state_dir=state)
        finally:
            done.set()

    threading.Thread(target=job, name=name, daemon=True).start()
    stats = load(url, clients, done.is_set)
    result = outcome.get("result")
    if result is None or not result.ok:
        raise SystemExit(f"job {name} failed: {result.message if result else 'raised'}")
    return stats, result.wall_s


def timed_job(job_spec: ExtractionJobSpec, state: Path, name: str) -> float:
    result = run_job(name, job_spec, state_dir=state)
    if not result.ok:
        raise SystemExit(f"job {name} failed: {result.message}")
    return result.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300, help="small text files for the batch jobs")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=20, help="length of the query-only window")
    parser.add_argument("--max-in-flight", type=int, default=4,
                        help="serve.maxInFlight of the Serve-backed jobs (requests per stage actor)")
    args = parser.parse_args()
    SERVED["serve"]["maxInFlight"] = args.max_in_flight

    import ray
    from ray import serve

    from prism_pipeline.serve.app import build

    work = Path(tempfile.mkdtemp(prefix="prism-bench-serve-"))
    texts = make_texts(work / "texts", args.files)
    sample = spec(MEDIA, "media", TEXT, source={"exclude": ["**/README.md"]},
                  failurePolicy={"maxFailedFileRatio": 0.5})
    # As `prism run` sizes a local Ray, plus the service's replicas (the text model: 1 CPU; the ingress: 0.25).
    cpus = max(os.cpu_count() or 1, cpus_needed(sample) + 2)
    ray.init(num_cpus=cpus, resources={BATCH_RESOURCE: float(sample.cluster.batch_resource)}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    quiet_ray_data(verbose=False)
    figures: dict = {"machine": {"cores": os.cpu_count(), "ray_cpus": cpus}, "files": args.files,
                     "clients": args.clients, "max_in_flight": args.max_in_flight}
    try:
        filled = run_job("media", sample, state_dir=work / "served")
        figures["collection_points"] = filled.points_in_collection
        close_embedded(work / "served")
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        started = time.perf_counter()
        serve.run(build(ServeAppArgs(collection="media", state_dir=str(work / "served")).to_wire()),
                  name=SERVE_APP_NAME, route_prefix="/")
        figures["service_start_s"] = round(time.perf_counter() - started, 1)
        url = f"http://127.0.0.1:{port}"
        for q in QUERIES * 2:  # warm: first calls compile and fill caches
            query(url, q)

        window_end = time.perf_counter() + args.seconds
        figures["alone"] = load(url, args.clients, lambda: time.perf_counter() > window_end)
        # Wall times first, with no queries: the in-process job loads its model in its actor each time.
        timed_job(spec(texts, "warm", TEXT), work / "warm", "warm")  # imports, first actor start
        figures["wall_in_process_s"] = round(timed_job(spec(texts, "in-process", TEXT), work / "ip", "ip"), 1)
        figures["wall_serve_backed_s"] = round(timed_job(spec(texts, "served", SERVED), work / "sb", "sb"), 1)
        stats, wall = job_beside(url, args.clients, spec(texts, "beside-ip", TEXT), work / "bip", "beside-ip")
        figures["beside_in_process"] = {**stats, "job_wall_s": round(wall, 1)}
        stats, wall = job_beside(url, args.clients, spec(texts, "beside-sb", SERVED), work / "bsb", "beside-sb")
        figures["beside_serve_backed"] = {**stats, "job_wall_s": round(wall, 1)}
    finally:
        serve.shutdown()
        ray.shutdown()
    report(figures)


def report(f: dict) -> None:
    alone = f["alone"]
    print(json.dumps(f, indent=2))
    print("\n| phase | queries | errors | qps | p50 ms | p99 ms | p50 vs alone | qps vs alone |\n|---|---|---|---|---|---|---|---|")
    for label, key in (("alone", "alone"), ("beside an in-process job", "beside_in_process"),
                       ("beside a Serve-backed job", "beside_serve_backed")):
        s = f[key]
        p50 = s["p50_ms"] / alone["p50_ms"] if s["p50_ms"] and alone["p50_ms"] else float("nan")
        print(f"| {label} | {s['queries']} | {s['errors']} | {s['qps']} | {s['p50_ms']} | {s['p99_ms']} | "
              f"{p50:.2f}x | {s['qps'] / alone['qps']:.2f}x |")
    ratio = f["wall_serve_backed_s"] / f["wall_in_process_s"]
    print(f"\nbatch job, {f['files']} text files: in-process {f['wall_in_process_s']} s, Serve-backed "
          f"{f['wall_serve_backed_s']} s ({ratio:.2f}x); beside the query load: in-process "
          f"{f['beside_in_process']['job_wall_s']} s, Serve-backed {f['beside_serve_backed']['job_wall_s']} s")


if __name__ == "__main__":
    main()
