"""Many tiny files: `prism run` with a near-free plug-in extractor over N files of a few bytes, on local
disk and through an S3-compatible server (moto's, on 127.0.0.1), then the incremental re-run of the
unchanged files. It measures the pipeline's own cost per file, its driver's memory, and how soon the
first item comes out, which is what streaming listing and fingerprint-only skips are for.

- corpus: N (default 1,000,000) .txt files of a few bytes (`w<i>`), 1,000 per folder, made once and
  cached under ~/.cache/prism-bench/files-<N>/data (reused by later runs; `--corpus-root` to move it);
- extractor: `python: cheap_extractor:CharCount` (benchmarks/plugins, on PYTHONPATH of `prism run` and
  so of its Ray workers): one payload `{"chars": n}` per item, no model;
- S3: `moto_server` as its own process on 127.0.0.1, `--s3-files` (default 20,000) of the same files
  uploaded with 32 threads (moto keeps every object in Python memory and answers in one process,
  so a million objects is not practical there);
- each run: `prism run` as a subprocess with a fresh --state-dir and --progress-port
  (benchmarks/prism_process.py): wall, the job's own time, time to the first item (from the
  process's and from the job's start), driver peak RSS (VmHWM of the `prism run` process only),
  per-file overhead (job time / files), files/s; then the same command again (every file unchanged):
  wall, µs per skipped file and bytes read (prism_bytes_read_total, which should be 0).

    .venv/bin/python benchmarks/million_files.py [--files 1000000] [--s3-files 20000] [--no-s3] [--no-local]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from prism_process import free_port, run_prism  # noqa: E402

PLUGINS = ROOT / "benchmarks" / "plugins"
PER_DIR = 1000
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def corpus(root: Path, n: int) -> Path:
    """N tiny files under root/files-N/data, made once (a `complete` marker beside data/ says so)."""
    base = root / f"files-{n}"
    data, marker = base / "data", base / "complete"
    if marker.exists():
        return data
    shutil.rmtree(base, ignore_errors=True)
    started = time.monotonic()
    for d in range((n + PER_DIR - 1) // PER_DIR):
        folder = data / f"d{d:04d}"
        folder.mkdir(parents=True)
        for i in range(d * PER_DIR, min(n, (d + 1) * PER_DIR)):
            fd = os.open(folder / f"f{i:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"w%d\n" % i)
            os.close(fd)
    marker.write_text(str(n))
    print(f"corpus: {n} files made in {time.monotonic() - started:.1f} s under {data}", file=sys.stderr)
    return data


def manifest(path: Path, name: str, source: dict) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": name},
        "spec": {"source": source,
                 "extractors": [{"name": "chars", "kind": "python: cheap_extractor:CharCount", "batchSize": 1024}],
                 "sink": {"qdrant": {"collection": name}}},
    }))
    return path


def measure(label: str, job: Path, state: Path, files: int, env: dict[str, str]) -> dict:
    first = run_prism(job, state, env=env)
    if first.rc:
        raise SystemExit(f"{label}: prism run failed ({first.rc}):\n{first.output[-3000:]}")
    rerun = run_prism(job, state, env=env)
    if rerun.rc:
        raise SystemExit(f"{label}: prism re-run failed ({rerun.rc}):\n{rerun.output[-3000:]}")
    job_s = first.job_s or first.wall_s

    def r(x, nd=1):
        return None if x is None else round(x, nd)

    row = {
        "source": label, "files": files, "done": first.done_summary,
        "wall_s": r(first.wall_s), "job_s": r(job_s), "cpu_s": r(first.cpu_s),
        "cpu_us_per_file": round((first.cpu_s or 0) / files * 1e6),
        "us_per_file": round(job_s / files * 1e6), "files_per_s": round(files / job_s),
        "first_item_from_process_s": r(first.first_item_from_process_s),
        "first_item_from_job_s": r(first.first_item_from_job_s),
        "listing_complete_from_process_s": r(first.listing_complete_from_process_s),
        "from_job_first_read_s": r(first.first_read_from_job_s),
        "from_job_first_items_s": r(first.first_items_from_job_s),
        "from_job_first_done_s": r(first.first_done_from_job_s),
        "listing_complete_from_job_s": r(first.listing_complete_from_job_s),
        "driver_peak_rss_mib": r(first.peak_rss_mib, 0),
        "rerun_wall_s": r(rerun.wall_s), "rerun_job_s": r(rerun.job_s, 2), "rerun_cpu_s": r(rerun.cpu_s),
        "rerun_us_per_skipped_file": round((rerun.job_s or rerun.wall_s) / files * 1e6),
        "rerun_skipped": rerun.skipped_summary,
        "rerun_bytes_read_metric": rerun.metrics.get("prism_bytes_read_total"),
        "rerun_bytes_read_summary": rerun.bytes_read_summary,
        "rerun_driver_peak_rss_mib": r(rerun.peak_rss_mib, 0),
    }
    print(json.dumps(row), flush=True)
    return row


def s3_server(files: Path, n: int, bucket: str = "tiny") -> tuple[subprocess.Popen, str]:
    """moto_server in its own process, with the first n files of the corpus uploaded under bucket/data/."""
    import boto3
    from botocore.config import Config

    port = free_port()
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 5},
                                        max_pool_connections=32))
    for _ in range(100):
        try:
            client.create_bucket(Bucket=bucket)
            break
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.2)
    else:
        server.kill()
        raise SystemExit(f"moto_server did not answer on {endpoint}")
    paths = sorted(files.rglob("*.txt"))[:n]
    started = time.monotonic()

    def put(p: Path) -> None:
        client.put_object(Bucket=bucket, Key=f"data/{p.relative_to(files).as_posix()}", Body=p.read_bytes())

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, paths))
    print(f"s3: {len(paths)} objects uploaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return server, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--s3-files", type=int, default=20_000)
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--corpus-root", type=Path, default=Path.home() / ".cache" / "prism-bench")
    args = parser.parse_args()

    data = corpus(args.corpus_root, args.files)
    work = Path(tempfile.mkdtemp(prefix="prism-million-"))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH", "")]))}
    rows = []
    try:
        if not args.no_local:
            rows.append(measure("local", manifest(work / "local.json", "tiny-local", {"uri": str(data)}),
                                work / "state-local", args.files, env))
        if not args.no_s3:
            n = min(args.s3_files, args.files)
            s3_files = corpus(args.corpus_root, n)
            server, endpoint = s3_server(s3_files, n)
            try:
                job = manifest(work / "s3.json", "tiny-s3", {"uri": "s3://tiny/data/", "endpoint": endpoint})
                rows.append(measure("s3 (moto)", job, work / "state-s3", n, {**env, **AWS_ENV}))
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| source | files | job (s) | µs/file | files/s | first item (s, process / job) | driver peak RSS (MiB) "
          "| re-run (s, wall / job) | µs/skipped file | re-run bytes read |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['source']} | {row['files']} | {row['job_s']} | {row['us_per_file']} | {row['files_per_s']} "
              f"| {row['first_item_from_process_s']} / {row['first_item_from_job_s']} | {row['driver_peak_rss_mib']} "
              f"| {row['rerun_wall_s']} / {row['rerun_job_s']} | {row['rerun_us_per_skipped_file']} "
              f"| {row['rerun_bytes_read_summary']} |")


if __name__ == "__main__":
    main()
