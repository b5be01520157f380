"""The repository's own files (tracked or new, never ignored ones such as .venv), for static checks."""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "node_modules", ".prism", "__pycache__", ".pytest_cache", ".ruff_cache", "build",
             "dist"}


def repo_files(*patterns: str) -> list[Path]:
    """Files matching any glob pattern (on the path relative to the root), sorted."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             cwd=ROOT, capture_output=True, timeout=60, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):  # not a git checkout: walk the tree instead
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    hits = {n for n in names if any(fnmatch.fnmatch(n, pat) for pat in patterns)}
    return sorted(ROOT / n for n in hits if (ROOT / n).is_file())


def yaml_files() -> list[Path]:
    return repo_files("*.yaml", "*.yml")


def documents(path: Path) -> list[dict]:
    """The non-empty documents of a (multi-document) YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()
