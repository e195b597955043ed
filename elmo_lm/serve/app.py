"""The HTTP service: a FastAPI app over one `Embedder`, its requests micro-batched (`MicroBatcher`).

Endpoints: `POST /v1/embeddings` (OpenAI-compatible sentence vectors), `POST /embed` (token
vectors), `GET /healthz`, `GET /info`; with a reference set, the exploration page at `/` and its
`/api/neighbors`, `/api/projection` and `/api/head`. Every refused request gets a 4xx status and
`{"error": {"message": ..., "type": "invalid_request_error"}}`; the service keeps serving.
"""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..embed import Embedder, select_layers, sentence_vector
from ..errors import ElmoError
from ..neighbors import find_word
from .batcher import MicroBatcher
from .explore import Explorer
from .requests import (EmbeddingsRequest, EmbedRequest, NeighboursRequest, ProjectionRequest, RequestError, parse_body,
                       token_lists)

ASSETS = Path(__file__).parent / "assets"
"""The page's HTML, JavaScript and CSS (no network needed)."""


@dataclass
class ServeSettings:
    """How the service batches and what it accepts."""

    max_batch_tokens: int = 2048
    """Flush a micro-batch once it holds this many tokens."""
    max_wait_ms: float = 5.0
    """... or this long after its first request arrived."""
    max_request_tokens: int = 8192
    """Refuse (413) a request with more tokens than this."""
    max_request_bytes: int = 1 << 20
    """Refuse (413) a body larger than this."""
    model_name: str = "elmo"
    """The name /v1/embeddings and /info report."""


def create_app(embedder: Embedder, settings: ServeSettings | None = None, explorer: Explorer | None = None) -> FastAPI:
    """The service's app; its model worker starts now and stops when the app shuts down.

    With an `explorer`, it also serves the exploration page at `/` and its API under `/api/`.
    """
    settings = settings or ServeSettings()
    batcher = MicroBatcher(embedder, settings.max_batch_tokens, settings.max_wait_ms)
    config = embedder.model.config

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()  # uvicorn gets here after the requests in flight have been answered

    app = FastAPI(title="elmo-lm", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.embedder = embedder
    app.state.settings = settings

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        return {"model": settings.model_name, "layers": config.n_output_layers, "dimensions": config.output_dim,
                "token_dimensions": config.projection_dim, "settings": asdict(settings),
                "waiting": batcher.waiting, "in_flight": batcher.in_flight, "served": asdict(batcher.stats)}

    # The embedding endpoints return JSONResponse themselves: FastAPI's own conversion of a returned dict
    # walks every float of every vector in Python first (jsonable_encoder), which cost more CPU than the model.
    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = parse_body(await read_body(request, settings.max_request_bytes), EmbeddingsRequest)
        if body.dimensions is not None and body.dimensions != config.output_dim:
            raise RequestError(422, f"dimensions: this model gives {config.output_dim}, not {body.dimensions}")
        texts = [body.input] if isinstance(body.input, str) else body.input
        sentences = token_lists(texts, settings.max_request_tokens, "input")
        layers = await batcher.embed(sentences)
        data = []
        for index, vectors in enumerate(layers):
            vector = sentence_vector(select_layers(vectors, body.layers), body.layers)  # (2P,)
            encoded = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                       if body.encoding_format == "base64" else vector.tolist())
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        count = sum(len(tokens) for tokens in sentences)
        return JSONResponse({"object": "list", "data": data, "model": body.model or settings.model_name,
                             "usage": {"prompt_tokens": count, "total_tokens": count}})

    @app.post("/embed")
    async def embed(request: Request) -> JSONResponse:
        body = parse_body(await read_body(request, settings.max_request_bytes), EmbedRequest)
        sentences = token_lists(body.sentences, settings.max_request_tokens, "sentences")
        layers = await batcher.embed(sentences)
        data = [{"index": index, "tokens": tokens, "embedding": select_layers(vectors, body.layers).tolist()}
                for index, (tokens, vectors) in enumerate(zip(sentences, layers))]
        return JSONResponse({"layers": body.layers, "data": data,
                             "usage": {"tokens": sum(len(tokens) for tokens in sentences)}})

    if explorer is not None:
        _add_page(app, batcher, explorer, settings)
    return app


def _add_page(app: FastAPI, batcher: MicroBatcher, explorer: Explorer, settings: ServeSettings) -> None:
    """The exploration page and the three questions it asks."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")

    @app.exception_handler(ElmoError)
    async def not_answerable(request: Request, error: ElmoError) -> JSONResponse:
        return error_response(422, str(error))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(ASSETS / "index.html")

    async def embed_one(sentence: str) -> tuple[list[str], np.ndarray]:
        tokens = token_lists([sentence.split()], settings.max_request_tokens, "sentence")[0]
        return tokens, (await batcher.embed([tokens]))[0]  # (L+1, n, 2P)

    @app.post("/api/neighbors")
    async def neighbours(request: Request) -> dict:
        body = parse_body(await read_body(request, settings.max_request_bytes), NeighboursRequest)
        tokens, layers = await embed_one(body.sentence)
        return explorer.neighbours(layers, tokens, body.word, body.k, body.same_word)

    @app.post("/api/projection")
    async def projection(request: Request) -> dict:
        body = parse_body(await read_body(request, settings.max_request_bytes), ProjectionRequest)
        query = None
        if body.sentence:
            tokens, layers = await embed_one(body.sentence)
            if body.layer < layers.shape[0]:
                query = layers[body.layer, find_word(tokens, body.word)]  # (2P,)
        return explorer.projection(body.word, body.layer, query)

    @app.get("/api/head")
    async def head() -> dict:
        return {"head": explorer.head, "layers": explorer.index.n_layers, "labels": explorer.labels is not None}


def error_response(status: int, message: str) -> JSONResponse:
    """The service's one error shape (as in OpenAI's API)."""
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body has {declared} bytes, more than {limit} (--max-request-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body has more bytes, more than {limit} (--max-request-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)

