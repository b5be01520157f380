"""Fixtures for pipeline tests: one local Ray per test session, small generated media, job specs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from prism_api import ExtractionJobSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Dummy credentials for the moto S3 server, given to Ray workers at start-up (workers do not see
# environment changes made after ray.init). Nothing here is a real secret.
WORKER_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
              "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

TEXTS = {
    "bees.txt": "Honeybees collect nectar from flowers and turn it into honey inside the hive.",
    "volcano.md": "# Volcanoes\n\nA volcano erupts molten lava, ash and gases from deep under the crust.",
    "space.txt": "The Moon orbits the Earth, and the Earth orbits the Sun once every year.",
    "ocean.txt": "Whales are large mammals that swim in the deep ocean and breathe air.",
}


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (ray.init costs ~5 s), advertising the batch resource
    every Prism stage asks for. Four logical CPUs so two concurrent jobs' pools fit on 2 cores."""
    import ray

    from prism_pipeline.runner import quiet_ray_data

    if not ray.is_initialized():
        ray.init(num_cpus=4, resources={"batch": 4.0}, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": WORKER_ENV})
    quiet_ray_data(verbose=False)
    yield ray
    ray.shutdown()


def write_media(folder: Path, *, images: int = 2, corrupt: bool = False) -> Path:
    """A few text documents and images (and optionally bad files) under `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TEXTS.items():
        (folder / name).write_text(text)
    rng = np.random.default_rng(7)
    for i in range(images):
        pixels = rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"noise_{i}.png")
    if corrupt:
        (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
        (folder / "empty.txt").write_bytes(b"")
        (folder / "notes.xyz").write_text("not a media file")
    return folder


def spec_for(uri: Path | str, collection: str, extractors: list[dict], **fields) -> ExtractionJobSpec:
    return ExtractionJobSpec.model_validate({
        "source": {"uri": str(uri)},
        "extractors": extractors,
        "sink": {"qdrant": {"collection": collection}},
        **fields,
    })


TEXT = {"name": "text", "kind": "text-embedding", "batchSize": 8}
FACES = {"name": "faces", "kind": "face-detection", "batchSize": 4}
SHOTS = {"name": "shots", "kind": "shot-boundary"}
