"""Fan-out: Prism's shared pipeline (read + decode once, every extractor chained on one stream) vs the
naive one (one job per extractor: every extractor re-reads and re-decodes every file), on the same
media and the same local Ray, with 1, 2 and 4 extractors.

Reported per extractor count: decodes per file for each (shared should be 1.00, naive k) and the
wall-time ratio shared / naive, measured side by side in one run.

Extractors, in order: face-detection (OpenCV's Haar back-end), image-embedding and brand-safety (a
tiny randomly initialised CLIP of the real architecture: no weights can be downloaded here, and a
small model keeps the comparison about reading and decoding, which is the point of sharing them),
shot-boundary (the histogram back-end). The back-ends are pinned so the results stay comparable with
the table in benchmarks/README.md: the defaults (yunet, TransNetV2) measure models, not fan-out.

    .venv/bin/python benchmarks/fanout.py [--photos 40] [--videos 4] [--repeats 1]
    .venv/bin/python benchmarks/fanout.py --profile   # where the shared 4-extractor run spends its time

--profile runs the warm-up and the shared 4-extractor job only, then sums Ray's timeline (ray.timeline():
every task and actor-method execution, `task:execute`) of that job: busy seconds against the job's
wall time times the CPUs Ray was given. Ray 2.60's local timeline leaves func_or_class_name empty
here, so the rows are by function name where Ray gives one, else one total row.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prism_api import ExtractionJobSpec  # noqa: E402
from prism_pipeline.pipeline import run_job  # noqa: E402
from prism_pipeline.runner import cpus_needed, quiet_ray_data  # noqa: E402
from prism_pipeline.sink.embedded import close_embedded  # noqa: E402
from tests.extractors.tiny_models import clip  # noqa: E402

MEDIA = ROOT / "examples" / "media"


def make_media(folder: Path, photos: int, videos: int) -> int:
    """Distinct 2048-px JPEGs made from the sample photos, plus copies of the sample video."""
    folder.mkdir(parents=True)
    sources = [Image.open(MEDIA / "photos" / name).convert("RGB")
               for name in ("astronaut.jpg", "coffee.jpg", "chelsea_cat.png")]
    rng = np.random.default_rng(0)
    for i in range(photos):
        img = sources[i % len(sources)].resize((2048, 1536))
        if i % 2:
            img = ImageOps.mirror(img)
        img = ImageEnhance.Brightness(img).enhance(0.8 + 0.4 * rng.random())
        img.save(folder / f"photo_{i:03d}.jpg", quality=90)
    for i in range(videos):
        shutil.copy(MEDIA / "video" / "astronaut_then_coffee.mp4", folder / f"video_{i:02d}.mp4")
    return photos + videos


def extractor_specs(clip_uri: str) -> list[dict]:
    return [
        {"name": "faces", "kind": "face-detection", "batchSize": 16, "options": {"backend": "haar"}},
        {"name": "visual", "kind": "image-embedding", "model": clip_uri, "batchSize": 16},
        {"name": "safety", "kind": "brand-safety", "model": clip_uri, "batchSize": 16,
         "options": {"categories": ["safe", "violence", "alcohol"]}},
        {"name": "shots", "kind": "shot-boundary", "options": {"backend": "histogram"}},
    ]


def spec(media: Path, collection: str, extractors: list[dict]) -> ExtractionJobSpec:
    return ExtractionJobSpec.model_validate({
        "source": {"uri": str(media)},
        "preprocess": {"video": {"framesPerSecond": 2, "audio": False}, "image": {"maxSide": 1024}},
        "extractors": extractors,
        "sink": {"qdrant": {"collection": collection}},
        "incremental": False,
    })


def timed(name: str, job: ExtractionJobSpec, state: Path) -> tuple[float, int]:
    started = time.monotonic()
    result = run_job(name, job, state_dir=state)
    close_embedded(state)  # flushed and closed while its folder exists (the temp dir goes at the end)
    if not result.ok:
        raise SystemExit(f"{name} failed: {result.message}")
    return time.monotonic() - started, result.tracker.totals.decodes


def profile(work: Path, specs: list[dict], cpus: int) -> None:
    """The shared 4-extractor job with Ray's timeline: busy seconds per task/actor-method name."""
    import ray

    began_us = time.time() * 1e6  # the warm-up's events (earlier) are left out
    wall, decodes = timed("profile-4", spec(work / "media", "p4", specs), work / "state-p4")
    events = json.loads(Path(ray.timeline(filename=str(work / "after.json")) or work / "after.json").read_text())
    busy: dict[str, float] = {}
    for event in events:
        # task:execute spans a whole task or actor-method run (its deserialize/store events nest in it)
        if event.get("cat") == "task:execute" and float(event.get("ts", 0)) >= began_us:
            args = event.get("args") or {}
            name = f"{args.get('func_or_class_name', '?')} {event.get('name', '')}".strip()
            busy[name] = busy.get(name, 0.0) + event["dur"] / 1e6
    print(json.dumps({"wall_s": round(wall, 1), "decodes": decodes, "cpus": cpus,
                      "cpu_slots_s": round(wall * cpus, 1)}))
    print("| task or method | busy s | share of wall x CPUs |")
    print("|---|---|---|")
    for name, secs in sorted(busy.items(), key=lambda kv: -kv[1])[:25]:
        print(f"| {name[:90]} | {secs:.1f} | {secs / (wall * cpus):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant; the best is kept")
    parser.add_argument("--profile", action="store_true", help="the shared 4-extractor run only, with a timeline summary")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="prism-fanout-"))
    files = make_media(work / "media", args.photos, args.videos)
    specs = extractor_specs(f"file://{clip(work / 'clip')}")
    biggest = spec(work / "media", "x", specs)
    ray.init(num_cpus=cpus_needed(biggest), resources={"batch": 4.0}, include_dashboard=False,
             log_to_driver=False)
    quiet_ray_data(verbose=False)

    # Warm-up: first-time imports and model loads in fresh worker processes would bill whichever
    # variant ran first.
    timed("warmup", spec(work / "media", "warmup", specs), work / "state-warmup")

    if args.profile:
        profile(work, specs, cpus_needed(biggest))
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        return

    rows = []
    for k in (1, 2, 4):
        chosen = specs[:k]
        shared_runs, naive_runs = [], []
        for r in range(args.repeats):
            naive_wall, naive_decodes = 0.0, 0
            for ex in chosen:
                wall, decodes = timed(f"naive-{k}-{ex['name']}-{r}", spec(work / "media", f"n{k}{ex['name']}{r}", [ex]),
                                      work / f"state-n{k}-{ex['name']}-{r}")
                naive_wall += wall
                naive_decodes += decodes
            naive_runs.append((naive_wall, naive_decodes))
            shared_runs.append(timed(f"shared-{k}-{r}", spec(work / "media", f"s{k}{r}", chosen),
                                     work / f"state-s{k}-{r}"))
        shared_wall, shared_decodes = min(shared_runs)
        naive_wall, naive_decodes = min(naive_runs)
        rows.append({
            "extractors": k, "files": files,
            "shared_decodes_per_file": round(shared_decodes / files, 2),
            "naive_decodes_per_file": round(naive_decodes / files, 2),
            "shared_wall_s": round(shared_wall, 1), "naive_wall_s": round(naive_wall, 1),
            "shared_over_naive": round(shared_wall / naive_wall, 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    print("\n| extractors | decodes/file shared | decodes/file naive | wall shared (s) | wall naive (s) | shared/naive |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['extractors']} | {row['shared_decodes_per_file']:.2f} | {row['naive_decodes_per_file']:.2f} "
              f"| {row['shared_wall_s']} | {row['naive_wall_s']} | {row['shared_over_naive']:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
