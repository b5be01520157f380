"""Reading ExtractionJob manifests from YAML files (several documents per file allowed).

A manifest is untrusted input: the file's size, its YAML aliases (a "billion laughs" document expands
a few hundred bytes into gigabytes once something walks it) and its nesting are bounded before any
of it is handed on, a duplicate key is an error (YAML would keep the last one silently), and the text
must be UTF-8. Each refusal is one ManifestError naming the file, the line where it can, and the limit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

# The Kubernetes API server refuses requests over 3 MiB; a manifest larger than that is not a job.
MAX_MANIFEST_BYTES = 3 * 1024 * 1024
# Aliases are legitimate (`<<: *defaults`), but a job needs a handful, never thousands.
MAX_ALIASES = 100
# Nodes the aliases of one file may add when expanded (each alias counts the size of what it names).
MAX_ALIAS_NODES = 10_000
# Mappings and sequences nested inside each other; a job is about 6 deep.
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"


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


class _Refused(yaml.YAMLError):
    """A limit of the bounded loader, with where in the file it was met."""

    def __init__(self, message: str, mark: Any):
        super().__init__(message)
        self.message, self.mark = message, mark

    def __str__(self) -> str:
        line = f"line {self.mark.line + 1}: " if self.mark is not None else ""
        return line + self.message


# libyaml composes (and bounds flow nesting) in C when it is there; the checks below read the node graph.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BoundedLoader(_Base):
    """A safe loader that checks each composed document before constructing it: aliases (a node
    reached twice is an alias; it counts the values it stands for), nesting, recursive structures;
    and refuses duplicate mapping keys while constructing."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    continue
                if first is not key_node.start_mark:
                    raise _Refused(f"duplicate key {key!r} (first at line {first.line + 1}); YAML keeps only "
                                   "the last one, so remove or rename one of them", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


BoundedLoader.add_constructor("tag:yaml.org,2002:map", BoundedLoader.construct_yaml_map)


class _Graph:
    """Walks one composed document once; shared nodes are the aliases."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}  # node id -> values it stands for, expanded; -1 while being walked
        self.aliases = 0
        self.alias_values = 0

    def walk(self, node: Any, depth: int = 1) -> int:
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        known = self.sizes.get(id(node))
        if known is not None:  # reached before: an alias of this node
            if known < 0:
                raise _Refused("an alias refers to the collection it is in (a recursive structure); "
                               "write the value out", node.start_mark)
            self.aliases += 1
            self.alias_values += known
            if self.aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases; write the values out, a job needs "
                               "only a few aliases", node.start_mark)
            if self.alias_values > MAX_ALIAS_NODES:
                raise _Refused(f"YAML aliases expand to more than {MAX_ALIAS_NODES} values (the anchor here is "
                               "repeated too often); an alias may not repeat large parts of a document",
                               node.start_mark)
            return known
        if isinstance(node, ScalarNode):
            self.sizes[id(node)] = 1
            return 1
        self.sizes[id(node)] = -1
        children = node.value if isinstance(node, SequenceNode) else [p for pair in node.value for p in pair]
        total = 1 + sum(self.walk(child, depth + 1) for child in children)
        self.sizes[id(node)] = total
        return total


def load_all(text: str) -> list[Any]:
    """Every document of `text`, within the limits above (raises yaml.YAMLError)."""
    loader = BoundedLoader(text)
    try:
        out = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _Graph().walk(node)
            out.append(loader.construct_document(node) if node is not None else None)
        return out
    finally:
        loader.dispose()


def read_documents(path: str) -> list[Document]:
    p = Path(path)
    if p.is_dir():
        raise ManifestError(f"{path}: is a directory; give the manifest files in it (e.g. {path.rstrip('/')}/*.yaml)")
    if not p.is_file():
        raise ManifestError(f"{path}: no such file")
    try:
        size = p.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: {size / 1024**2:.1f} MiB is larger than a manifest may be "
                                f"({MAX_MANIFEST_BYTES // 1024**2} MiB, the Kubernetes API's request limit); "
                                "keep data out of the manifest")
        with open(p, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:  # grew since stat, or a pipe
        raise ManifestError(f"{path}: larger than a manifest may be ({MAX_MANIFEST_BYTES // 1024**2} MiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ManifestError(f"{path}: line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                            "save the file as UTF-8") from None
    try:
        docs = [d for d in load_all(text) if d is not None]
    except _Refused as exc:
        raise ManifestError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)") from None
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
