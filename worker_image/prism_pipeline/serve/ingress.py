"""The HTTP ingress of the Serve application: `POST /embed`, `POST /search`, `GET /info` and the
OpenAPI document (`/openapi.json`, FastAPI's), with the models of prism_api.search_service.

Every bad input is a 4xx with an ErrorBody naming the field: malformed JSON (400), a body that does
not validate (422), an unknown `vector` (422), a query its vector cannot embed (422), an image that
does not decode (422) or is too large (413). Queries are embedded by the model deployments (their
handles), so the ingress itself loads no model; it holds the sink (in embedded mode the only
process that may open the store).
"""


import asyncio
import base64
import binascii
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from prism_api import QdrantSink
from prism_api.search_service import (
    MAX_IMAGE_BYTES,
    ROUTE_EMBED,
    ROUTE_INFO,
    ROUTE_SEARCH,
    EmbedRequest,
    EmbedResponse,
    ErrorBody,
    SearchHit,
    SearchRequest,
    SearchResponse,
    ServedModel,
    ServiceInfo,
)
from prism_pipeline.search import QUERY_KINDS, hit
from prism_pipeline.sink import Sink, SinkWriteError

from . import filters

# How long one query may wait for its embedding (queued behind a batch, or a replica starting).
EMBED_TIMEOUT_S = 60.0
ERRORS = {400: "Malformed request", 404: "Not found", 413: "Image too large", 422: "Invalid request",
          502: "Qdrant failed", 504: "Embedding timed out"}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what} for code, what in ERRORS.items()}

api = FastAPI(title="Prism search", version="v1alpha1",
              description="Query-time embedding and search over one Prism collection, with the model "
              "versions that wrote it (prism_api.search_service).")


@dataclass(frozen=True)
class IngressConfig:
    """What app.build() learnt from the collection's record, for the ingress."""

    collection: str
    qdrant_url: str | None
    state_dir: str | None
    timeout_seconds: float
    models: list[ServedModel]
    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extractor -> "text", "image"


class BadRequest(Exception):
    """A request that cannot be served as asked: an HTTP status and the ErrorBody."""

    def __init__(self, status: int, error: str, field: str | None = None):
        super().__init__(error)
        self.status, self.body = status, ErrorBody(error=error, field=field)


def _error(status: int, error: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=ErrorBody(error=error, field=field).model_dump(mode="json"))


@api.exception_handler(BadRequest)
async def _bad_request(_: Request, err: BadRequest) -> JSONResponse:
    return JSONResponse(status_code=err.status, content=err.body.model_dump(mode="json"))


@api.exception_handler(RequestValidationError)
async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
    """FastAPI's validation errors as one ErrorBody: the first problem's field (camelCase, as on the
    wire) and every problem in the message. Undecodable JSON is 400, an oversized image 413."""
    problems = list(err.errors())
    first = problems[0] if problems else {}
    loc = tuple(p for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "json_invalid":
        return _error(400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})")
    if loc == ("image",) and first.get("type") == "string_too_long":
        return _error(413, f"image: larger than {MAX_IMAGE_BYTES} bytes (base64: "
                      f"{first.get('ctx', {}).get('max_length')} characters)", "image")
    messages = []
    for p in problems:
        where = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        messages.append(f"{where}: {p.get('msg')}" if where else str(p.get("msg")))
    path = _dotted(loc)
    return _error(422, "; ".join(messages) or "invalid request", path or None)


def _dotted(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else ("." if i else "") + str(p) for i, p in enumerate(loc))


def image_bytes(encoded: str | None) -> bytes:
    """The image query's bytes from base64 (a `data:image/...;base64,` URL prefix is allowed)."""
    text = encoded or ""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadRequest(422, f"image: not base64 ({err})", "image") from err
    if not data:
        raise BadRequest(422, "image: empty", "image")
    if len(data) > MAX_IMAGE_BYTES:
        raise BadRequest(413, f"image: {len(data)} bytes, more than {MAX_IMAGE_BYTES}", "image")
    return data


def search_hit(score: float, payload: dict[str, Any], query: str = "") -> SearchHit:
    """A point's payload as a SearchHit (prism_pipeline.search.hit, with modality and timestamp)."""
    h = hit(score, payload, query)
    return SearchHit(score=h.score, uri=h.uri, key=h.key, item=h.item, modality=h.modality, timestamp=h.timestamp,
                     at=h.at, page=h.page, text=h.text, excerpt=h.excerpt, failed_extractors=list(h.failed_extractors))


def open_sink(config: IngressConfig) -> Sink:
    """The ingress's read handle: the server with args.timeoutSeconds per request, or the embedded
    store (held, with its lock, until the replica stops)."""
    if config.qdrant_url:
        spec = QdrantSink.model_construct(collection=config.collection, url=config.qdrant_url,
                                          timeout_seconds=config.timeout_seconds)
        return Sink(spec)
    return Sink.open_existing(config.collection, state_dir=config.state_dir or ".prism")


@serve.ingress(api)
class Ingress:
    """The ingress deployment (named `Ingress` by app.build)."""

    def __init__(self, config: IngressConfig, handles: dict[str, Any]):
        self._config = config
        self._handles = handles
        self._sink = open_sink(config)
        # qdrant-client's local mode is not thread-safe; a server client is, but one lock is simplest.
        self._sink_lock = threading.Lock()

    def __del__(self) -> None:
        sink = getattr(self, "_sink", None)
        if sink is not None:
            sink.close()

    # -- routes ------------------------------------------------------------------------------------

    @api.post(ROUTE_EMBED, response_model=EmbedResponse, responses=_RESPONSES)
    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """The query's vector from every deployment that embeds it (or from the one named)."""
        kind, names = self._embedders(request.vector, request)
        vectors = await asyncio.gather(*(self._embed(name, kind, request) for name in names))
        versions = {m.extractor: m.version for m in self._config.models}
        return EmbedResponse(vectors=dict(zip(names, vectors, strict=True)),
                             versions={n: versions[n] for n in names})

    @api.post(ROUTE_SEARCH, response_model=SearchResponse, responses=_RESPONSES)
    async def search(self, request: SearchRequest) -> SearchResponse:
        """The best `limit` items for the query, by the named vector or the first that embeds it."""
        kind, names = self._embedders(request.vector, request, first=True)
        name = names[0]
        vector = await self._embed(name, kind, request)
        try:
            found = await asyncio.to_thread(self._search, name, vector, request)
        except SinkWriteError as err:
            raise BadRequest(502, f"searching collection {self._config.collection!r}: {err}") from err
        query = request.text or ""
        version = next(m.version for m in self._config.models if m.extractor == name)
        return SearchResponse(vector=name, version=version, hits=[search_hit(f.score, f.payload, query) for f in found])

    @api.get(ROUTE_INFO, response_model=ServiceInfo)
    async def info(self) -> ServiceInfo:
        """The collection and, per deployment, the model version its replicas loaded."""
        loaded = await asyncio.gather(*(self._handles[m.extractor].info.remote() for m in self._config.models))
        return ServiceInfo(collection=self._config.collection, models=[ServedModel(**{k: v for k, v in d.items() if k in ServedModel.model_fields}) for d in loaded])

    # -- helpers -----------------------------------------------------------------------------------

    def _embedders(self, vector: str | None, request: EmbedRequest | SearchRequest,
                   first: bool = False) -> tuple[str, list[str]]:
        """The query's kind ("text" or "image") and the deployments to embed it with."""
        kind = "text" if request.text is not None else "image"
        served = [m.extractor for m in self._config.models]
        if vector is not None:
            if vector not in self._handles:
                raise BadRequest(422, f"vector: collection {self._config.collection!r} has no served vector "
                                 f"{vector!r} (served: {', '.join(served)})", "vector")
            if kind not in self._config.inputs.get(vector, ()):
                can = " and ".join(self._config.inputs.get(vector, ())) or "nothing"
                raise BadRequest(422, f"{kind}: vector {vector!r} cannot embed a {kind} query (it embeds {can}); "
                                 f"name another vector or send {'an image' if kind == 'text' else 'text'}", kind)
            return kind, [vector]
        able = [n for n in served if kind in self._config.inputs.get(n, ())]
        if first:  # the default vector: text-embedding before image-embedding, as `prism search`
            kinds = {m.extractor: m.kind for m in self._config.models}
            able.sort(key=lambda n: QUERY_KINDS.index(kinds[n]) if kinds[n] in QUERY_KINDS else len(QUERY_KINDS))
        if not able:
            raise BadRequest(422, f"{kind}: no vector of collection {self._config.collection!r} embeds a {kind} "
                             f"query (served: {', '.join(served)})", kind)
        return kind, able[:1] if first else able

    async def _embed(self, name: str, kind: str, request: EmbedRequest | SearchRequest) -> list[float]:
        handle = self._handles[name]
        try:
            if kind == "text":
                return await asyncio.wait_for(handle.embed_texts.remote(request.text), EMBED_TIMEOUT_S)
            out = await asyncio.wait_for(handle.embed_images.remote(image_bytes(request.image)), EMBED_TIMEOUT_S)
        except TimeoutError as err:
            raise BadRequest(504, f"{name}: no embedding within {EMBED_TIMEOUT_S:.0f} s; retry") from err
        if "error" in out:
            raise BadRequest(422, f"image: {out['error']}", "image")
        return out["vector"]

    def _search(self, name: str, vector: list[float], request: SearchRequest) -> list[Any]:
        with self._sink_lock:
            return filters.search(self._sink, name, vector, request.limit, request.filter)
