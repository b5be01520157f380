"""Fixtures shared by the extractor tests: tiny models saved once per session, spec builders."""

from __future__ import annotations

import numpy as np
import pytest

from prism_api import ExtractorSpec

from . import tiny_models


def spec(kind: str, model: str | None = None, **fields) -> ExtractorSpec:
    """An extractor spec as a user would write it (wire names accepted)."""
    return ExtractorSpec.model_validate({"name": kind.replace("-", "_"), "kind": kind, "model": model, **fields})


def image_item(key: str, image: np.ndarray) -> dict:
    return {"key": key, "uri": key, "modality": "image", "image": image, "outputs": {}}


@pytest.fixture(scope="session")
def clip_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.clip(tmp_path_factory.mktemp("clip")))


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), np.full((20, 20, 3), 200, np.uint8)]


def speech(text: str, path) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng (US English, a little slow): float32 mono samples and their rate.
    Skips the test when espeak-ng is not installed (CI installs it: apt-get install espeak-ng)."""
    import shutil
    import subprocess
    import wave

    binary = shutil.which("espeak-ng")
    if binary is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng): no speech to transcribe")
    subprocess.run([binary, "-v", "en-us", "-s", "140", "-w", str(path), text], check=True, timeout=60)
    with wave.open(str(path)) as wav:
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate


@pytest.fixture(scope="session")
def whisper_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.whisper(tmp_path_factory.mktemp("whisper")))


@pytest.fixture(scope="session")
def whisper_timestamps_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.whisper(tmp_path_factory.mktemp("whisper_ts"), timestamps=True))


@pytest.fixture(scope="session")
def detr_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.detr(tmp_path_factory.mktemp("detr")))


@pytest.fixture(scope="session")
def vit_gpt2_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.vit_gpt2(tmp_path_factory.mktemp("vit_gpt2")))


@pytest.fixture(scope="session")
def blip_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.blip(tmp_path_factory.mktemp("blip")))


@pytest.fixture(scope="session")
def rt_detr_uri(tmp_path_factory) -> str:
    return "file://" + str(tiny_models.rt_detr(tmp_path_factory.mktemp("rt_detr")))
