"""The extractor interface every built-in and plug-in implements.

An extractor is constructed cheaply on the driver (to learn its output kind, vector size and
version) and again in each Ray actor, where `setup()` loads the model once. The stage calls it
with a list of items of the modalities it declared, and it returns one output per item:

    class Colourfulness(Extractor):
        modalities = frozenset({"image"})
        output = Payload()

        def setup(self):            # once per actor: load weights here
            ...

        def __call__(self, items):  # items: list of item dicts (see preprocess.ITEM_KEYS)
            return [{"score": float(item["image"].std())} for item in items]

A vector output is a 1-D float array of `output.size`; a payload output is anything JSON can hold.
Raising for one item is fine: the stage retries that batch item by item and records only the
failing items.

An extractor that reads or produces text about an item (a transcript, the words in a photo, image
tags) hands it on with `add_text(item, text)`: a `text-embedding` stage listed later embeds it, so a
text query finds the second a phrase was spoken or the photo of a sign, and the point's payload
keeps it for search results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from prism_api import ExtractorSpec

MODALITIES = frozenset({"image", "audio", "text"})


class NoTextQuery(ValueError):
    """This extractor's vectors cannot be searched with a text query (e.g. image features without
    a text tower); the message says how to search them instead."""


def add_text(item: dict, text: str) -> None:
    """Append `text` to the item's `text` (newline-separated), once: a batch retried item by item
    after a failure must not repeat it. Blank text adds nothing."""
    text = (text or "").strip()
    if not text:
        return
    current = item.get("text") or ""
    if text in current.split("\n"):
        return
    item["text"] = f"{current}\n{text}" if current else text


@dataclass(frozen=True)
class Vector:
    """A dense vector per item: becomes a named vector (extractor name) in Qdrant."""

    size: int
    distance: str = "Cosine"  # Cosine, Dot, Euclid or Manhattan

    kind: ClassVar[str] = "vector"


@dataclass(frozen=True)
class Payload:
    """A JSON value per item: stored in the point payload under the extractor name."""

    kind: ClassVar[str] = "payload"


class Extractor:
    """Base class. Subclasses set `modalities` and `output` (or override them as properties)."""

    modalities: frozenset[str] = frozenset()
    output: Vector | Payload = Payload()
    # Sequence extractors need every item of a file, in order (shot cuts compare neighbouring
    # frames). The stream re-batches items across files after decoding, so the read stage runs
    # them on each whole file right after decoding; they should be cheap and model-light.
    per_file: ClassVar[bool] = False

    def __init__(self, spec: ExtractorSpec):
        self.spec = spec
        self.name = spec.name
        self.options: dict[str, Any] = dict(spec.options)

    @property
    def version(self) -> str:
        """Model name and revision. Changing it makes incremental runs redo every file."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def accepts(self, item: dict) -> bool:
        """Whether this extractor processes the item (default: by item modality)."""
        return item.get("modality") in self.modalities

    def setup(self) -> None:
        """Load the model. Called once per Ray actor, before the first batch."""

    def preflight(self) -> None:
        """Check, cheaply and on this machine, what setup() would fail on (a binary, its data files);
        raise ValueError or ModelError naming the option. `prism run` and `prism validate --for local`
        call it before Ray starts, so the error comes at once instead of from every actor."""

    def __call__(self, items: list[dict]) -> list[Any]:
        raise NotImplementedError

    def option(self, name: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        """An entry of spec.options with a type check and a message naming the field."""
        value = self.options.get(name, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"extractor {self.name!r}: options.{name} must be "
                             f"{' or '.join(k.__name__ for k in kinds)} (got {value!r})")
        return value

    def fingerprint(self) -> str:
        """Everything that changes this extractor's outputs: kind, version and options."""
        blob = json.dumps([self.spec.kind, self.version, self.options], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
