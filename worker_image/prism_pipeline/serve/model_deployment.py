"""One embedding extractor of a collection, served: the model the collection's record names, loaded
at exactly the recorded version, embedding queries in dynamic batches (`@serve.batch`).

The extractor is built the way `prism search` builds it (prism_pipeline.search.recorded_extractor:
the recorded kind, model and options), so a query lands in the same space as the points. A model
whose version differs from the record would put queries somewhere else: the replica refuses to
start (ModelVersionMismatch), and `check_versions`, which app.build() runs before binding anything,
makes the whole deploy fail at once with the same message.

An image query is decoded by the pipeline's own decoder (preprocess.image.decode_image with the
default spec.preprocess bounds: EXIF-upright, RGB, longest side 1024), so `/embed` of a file equals
the vector the batch extractor wrote for it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from ray import serve

from prism_api import Preprocess
from prism_api.search_service import ServedModel
from prism_pipeline.search import QUERY_KINDS, SearchError, recorded_extractor

# The kinds a query (text or image) can be embedded by: a deployment per recorded extractor of these.
SERVABLE_KINDS = QUERY_KINDS
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_BATCH_WAIT_TIMEOUT_S = 0.005


class ModelVersionMismatch(RuntimeError):
    """The model this machine would load is not the version that wrote the collection."""


class NotServable(ValueError):
    """A recorded extractor that cannot be served here (its model is missing, say)."""


@dataclass(frozen=True)
class Servable:
    """A recorded extractor that can embed queries, checked against this machine's model."""

    recorded: dict[str, Any]
    model: ServedModel
    inputs: tuple[str, ...]  # what it embeds: "text", "image"


def servable_entries(recorded_extractors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded extractors that get a deployment: vector outputs of a query-embedding kind."""
    return [e for e in recorded_extractors if e.get("output") == "vector" and e.get("kind") in SERVABLE_KINDS]


def mismatch_message(recorded: dict[str, Any], loaded: str) -> str:
    return (f"extractor {recorded['name']!r} ({recorded['kind']}): the collection was written with model version "
            f"{recorded['version']}, but this image loads {loaded}; queries embedded by another version would not "
            f"match the points. Serve it from an image with {recorded['version']} installed (the worker image "
            "the ExtractionJob ran on), or re-run the ExtractionJob into a new collection with this version")


def checked_extractor(recorded: dict[str, Any], gpu: float = 0) -> Any:
    """The extractor as recorded, not set up (no weights loaded); ModelVersionMismatch when this
    machine's version of its model is not the recorded one, NotServable when it cannot be built."""
    try:
        extractor = recorded_extractor(recorded, gpu)
    except SearchError as err:
        raise NotServable(str(err)) from err
    if extractor.version != recorded["version"]:
        raise ModelVersionMismatch(mismatch_message(recorded, extractor.version))
    return extractor


def inputs_of(extractor: Any) -> tuple[str, ...]:
    """What an extractor embeds as a query: text-embedding text; image-embedding images, and text
    through a text tower (the clip back-end; a tflite classifier has none)."""
    if extractor.spec.kind == "image-embedding":
        return ("image", "text") if getattr(extractor, "backend", "clip") == "clip" else ("image",)
    return ("text",)


def servables(recorded_extractors: list[dict[str, Any]]) -> list[Servable]:
    """Every servable extractor of the record, each built cheaply and its version checked; raises
    ModelVersionMismatch (all mismatches in one message) or NotServable."""
    found, mismatches = [], []
    for recorded in servable_entries(recorded_extractors):
        try:
            extractor = checked_extractor(recorded)
        except ModelVersionMismatch as err:
            mismatches.append(str(err))
            continue
        found.append(Servable(recorded, served_model(recorded), inputs_of(extractor)))
    if mismatches:
        raise ModelVersionMismatch("; ".join(mismatches))
    return found


def check_versions(recorded_extractors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ServedModel (as a dict) of each servable extractor; raises ModelVersionMismatch naming
    both versions when this machine's model is not the recorded one. Loads no weights."""
    return [s.model.model_dump(mode="json") for s in servables(recorded_extractors)]


def served_model(recorded: dict[str, Any]) -> ServedModel:
    return ServedModel(extractor=recorded["name"], kind=recorded["kind"], model=recorded.get("model"),
                       version=recorded["version"])


class ModelDeployment:
    """A Serve deployment (options applied in app.py) holding one extractor's model warm.

    `embed_texts` and `embed_images` are batched: each call passes one text or image and gets its
    vector, Serve groups concurrent calls into one model call (`reconfigure` sets the batch size
    and wait, from ServeDeployment through the deployment's user_config). `extract` runs the
    extractor on already decoded pipeline items (Serve-backed batch stages)."""

    def __init__(self, recorded: dict[str, Any], gpu: float = 0):
        self._recorded = recorded
        self._extractor = checked_extractor(recorded, gpu)
        self._inputs = inputs_of(self._extractor)
        self._extractor.setup()
        # One model call at a time: the batch methods and extract() share the model across threads.
        self._lock = threading.Lock()
        self._preprocess = Preprocess()

    def reconfigure(self, config: dict[str, Any]) -> None:
        size = int(config.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
        wait = float(config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_TIMEOUT_S))
        for method in (self.embed_texts, self.embed_images):
            method.set_max_batch_size(size)
            method.set_batch_wait_timeout_s(wait)

    def info(self) -> dict[str, Any]:
        """ServedModel's fields (the extractor and the model version this replica loaded) and the recorded
        `options` it runs with, which a Serve-backed batch stage compares with its own (they change vectors)."""
        return {**served_model(self._recorded).model_dump(mode="json"), "options": self._recorded.get("options") or {}}

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_TIMEOUT_S)
    async def embed_texts(self, texts: list[str]) -> list[list[float]]:
        """Called with one text; returns its vector (Serve batches the calls)."""
        if "text" not in self._inputs:
            raise ValueError(f"extractor {self._recorded['name']!r} ({self._recorded['kind']}) cannot embed text")
        return await asyncio.to_thread(self._texts, list(texts))

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_TIMEOUT_S)
    async def embed_images(self, images: list[bytes]) -> list[dict[str, Any]]:
        """Called with one image file's bytes; returns {"vector": [...]} or, for bytes that do not
        decode (or exceed the default spec.preprocess.image bounds), {"error": why}."""
        if "image" not in self._inputs:
            raise ValueError(f"extractor {self._recorded['name']!r} ({self._recorded['kind']}) cannot embed images")
        return await asyncio.to_thread(self._images, list(images))

    async def extract(self, items: list[dict]) -> list:
        """The extractor's own __call__ on decoded pipeline items: what the in-process stage returns."""
        return await asyncio.to_thread(self._call, items)

    def _call(self, items: list[dict]) -> list:
        with self._lock:
            return list(self._extractor(items))

    def _texts(self, texts: list[str]) -> list[list[float]]:
        ex = self._extractor
        with self._lock:
            if hasattr(ex, "embed_texts"):   # a dual encoder's text tower
                vectors = ex.embed_texts(texts)
            else:                            # text-embedding: its __call__ on text items, as embed_query
                vectors = ex([{"text": t, "modality": "text"} for t in texts])
        return [[float(x) for x in v] for v in vectors]

    def _images(self, images: list[bytes]) -> list[dict[str, Any]]:
        from prism_pipeline.preprocess import DecodeError
        from prism_pipeline.preprocess.image import decode_image

        bounds = self._preprocess.image
        decoded: list[Any] = []
        for data in images:
            try:
                decoded.append(decode_image(data, bounds.max_side, "image", bounds.max_pixels))
            except DecodeError as err:
                decoded.append(str(err))
        items = [{"key": f"query#{i}", "modality": "image", "image": d, "text": None}
                 for i, d in enumerate(decoded) if not isinstance(d, str)]
        vectors = iter(self._call(items) if items else [])
        return [{"error": d} if isinstance(d, str) else {"vector": [float(x) for x in next(vectors)]}
                for d in decoded]
