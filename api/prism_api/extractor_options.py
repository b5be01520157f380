"""spec.extractors[].options: which options each built-in kind reads, and the bounds every kind's
options must keep (they are settings: a few keys and short values, never data).

The bounds hold wherever the contract is read: `prism validate`, `prism run` and the operator, which
parses ExtractionJobs with these models. Checking them walks at most OPTIONS_MAX_VALUES values, so a
YAML alias bomb (shared lists that expand to billions of strings) is refused without being expanded.
The CRD carries what its schema can say (maxProperties); the rest is the operator's validation.
"""

from __future__ import annotations

import json
from typing import Any

OPTIONS_MAX_KEYS = 64           # top-level entries (the CRD's maxProperties)
OPTIONS_MAX_DEPTH = 8           # dicts and lists inside options
OPTIONS_MAX_VALUES = 4096       # keys and values, all levels together
OPTIONS_MAX_BYTES = 64 * 1024   # the options as JSON

# kind -> the options its extractor reads (prism_pipeline's built-in classes declare these as
# `known_options`; tests/extractors check each class reads no other). Plug-ins take any options.
BUILTIN_OPTIONS: dict[str, frozenset[str]] = {
    "text-embedding": frozenset({"normalize"}),
    "image-embedding": frozenset({"backend", "normalize", "tags", "tagThreshold", "labelsFile", "featureTensor",
                                  "crop", "threads", "dtype"}),
    "transcription": frozenset({"backend", "language", "vad", "beamSize", "timestamps", "maxNewTokens",
                                "minSilence", "dtype"}),
    "face-detection": frozenset({"backend", "cascade", "scaleFactor", "minNeighbors", "minSize", "threshold",
                                 "maxSide"}),
    "object-detection": frozenset({"backend", "threshold", "maxDetections", "labels", "dtype"}),
    "caption": frozenset({"maxNewTokens", "numBeams", "prompt", "dtype"}),
    "brand-safety": frozenset({"backend", "threshold", "categories", "template", "embedding", "dtype"}),
    "ocr": frozenset({"backend", "language", "psm", "minConfidence", "minChars", "timeoutSeconds"}),
    "shot-boundary": frozenset({"backend", "threshold", "bins", "maxFrames", "threads"}),
}

_NOT_DATA = "options are settings, not data: put data in a file the extractor reads"


class OptionsTooLarge(ValueError):
    pass


def check_bounds(options: dict[str, Any]) -> None:
    """Raise OptionsTooLarge (the message says which bound) when `options` exceeds one."""
    budget = [OPTIONS_MAX_VALUES]

    def walk(value: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise OptionsTooLarge(f"holds more than {OPTIONS_MAX_VALUES} keys and values; {_NOT_DATA}")
        if isinstance(value, dict | list | tuple):
            if depth > OPTIONS_MAX_DEPTH:
                raise OptionsTooLarge(f"nested more than {OPTIONS_MAX_DEPTH} levels deep")
            for item in value.items() if isinstance(value, dict) else value:
                if isinstance(value, dict):
                    budget[0] -= 1
                    walk(item[1], depth + 1)
                else:
                    walk(item, depth + 1)

    for value in options.values():
        walk(value, 1)
    size = len(json.dumps(options, default=str, separators=(",", ":")).encode())
    if size > OPTIONS_MAX_BYTES:
        raise OptionsTooLarge(f"{size} bytes as JSON, more than {OPTIONS_MAX_BYTES}; {_NOT_DATA}")


def unknown_options(kind: str, options: dict[str, Any]) -> list[str]:
    """Names in `options` that built-in `kind` does not read (none for plug-ins)."""
    known = BUILTIN_OPTIONS.get(kind)
    return [] if known is None else [name for name in options if name not in known]


def known_list(kind: str) -> str:
    return ", ".join(sorted(BUILTIN_OPTIONS[kind]))
