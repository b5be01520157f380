"""Reading the job the entrypoint is given: `--job` (the operator's encoded document, see
spec.entrypoint) or `--spec` (a YAML/JSON file path or inline JSON, for local tooling), holding the
{"apiVersion", "kind", "metadata", "spec"} object or a bare spec. Both end in one validation path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_api import ExtractionJobSpec, SpecError, Target, parse_job, parse_spec
from prism_api.entrypoint import JOB_ARG, EntrypointError, decode_document


@dataclass(frozen=True)
class JobArg:
    name: str
    uid: str | None
    spec: ExtractionJobSpec
    namespace: str = ""  # "" when the document has none (a bare spec, a local manifest)


class JobArgError(ValueError):
    pass


def load(text: str, target: Target = "any", default_name: str = "job") -> JobArg:
    """Parse --spec: inline JSON when it starts with '{', else a path to a YAML/JSON file."""
    stripped = text.strip()
    where = "--spec"
    if stripped.startswith("{"):
        try:
            obj: Any = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise JobArgError(f"--spec: not valid JSON: {err}") from err
    else:
        path = Path(text)
        if not path.is_file():
            raise JobArgError(f"--spec: {text!r} is neither inline JSON nor a readable file")
        where = str(path)
        import yaml

        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as err:
            raise JobArgError(f"{path}: not valid YAML/JSON: {err}") from err
        if len(docs) != 1:
            raise JobArgError(f"{path}: expected exactly one document (got {len(docs)})")
        obj = docs[0]
    return from_document(obj, where, target, default_name)


def load_encoded(text: str, target: Target = "any", default_name: str = "job") -> JobArg:
    """Parse --job: the operator's document as written by spec.entrypoint.encode_document."""
    try:
        obj = decode_document(text)
    except EntrypointError as err:
        message = str(err)
        raise JobArgError(message if message.startswith(JOB_ARG) else f"{JOB_ARG}: {message}") from None
    return from_document(obj, JOB_ARG, target, default_name)


def from_document(obj: Any, where: str, target: Target = "any", default_name: str = "job") -> JobArg:
    """Validate an ExtractionJob object (or a bare spec); `where` names its origin in errors."""
    if not isinstance(obj, dict):
        raise JobArgError(f"{where}: expected a mapping (an ExtractionJob or its spec)")
    try:
        if "spec" in obj or "apiVersion" in obj:
            if "apiVersion" in obj or "kind" in obj:
                job = parse_job(obj, target=target)
                return JobArg(job.metadata.name, job.metadata.uid, job.spec, job.metadata.namespace or "")
            meta = obj.get("metadata") or {}
            if not isinstance(meta, dict):
                raise JobArgError(f"{where}: metadata: expected a mapping")
            return JobArg(meta.get("name") or default_name, meta.get("uid"), parse_spec(obj["spec"], target),
                          str(meta.get("namespace") or ""))
        return JobArg(default_name, None, parse_spec(obj, target))
    except SpecError as err:
        raise JobArgError(f"{where}: invalid ExtractionJob:\n{err}") from err
