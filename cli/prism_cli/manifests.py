"""Reading ExtractionJob manifests from YAML files (several documents per file allowed)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Document:
    file: str
    index: int  # 0-based position in a multi-document file
    count: int  # documents in the file
    body: Any

    @property
    def where(self) -> str:
        return self.file if self.count == 1 else f"{self.file}[{self.index}]"


class ManifestError(ValueError):
    pass


def read_documents(path: str) -> list[Document]:
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{path}: no such file")
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not docs:
        raise ManifestError(f"{path}: holds no YAML document")
    return [Document(path, i, len(docs), d) for i, d in enumerate(docs)]


def documents_of(paths: list[str]) -> tuple[list[Document], int]:
    """Every document of every file, and how many files could not be read (each reported on stderr)."""
    documents: list[Document] = []
    unreadable = 0
    for path in paths:
        try:
            documents += read_documents(path)
        except ManifestError as exc:
            print(exc, file=sys.stderr)
            unreadable += 1
    return documents, unreadable
