"""The JSON bodies the service accepts, and how a raw body becomes one (or a `RequestError`).

Bodies are read and checked here rather than by FastAPI, so that every bad request gets the same
kind of answer: a 4xx status and `{"error": {"message": ..., "type": "invalid_request_error"}}`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..tokenize import tokenize


class RequestError(Exception):
    """A request the service refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EmbeddingsRequest(BaseModel):
    """POST /v1/embeddings, as in OpenAI's embeddings API (token-id inputs are not supported)."""

    model_config = ConfigDict(extra="ignore")
    input: str | list[str]
    """One text or a list of texts, each tokenized with the built-in tokenizer."""
    model: str | None = None
    """Accepted and echoed; the service has one model."""
    encoding_format: Literal["float", "base64"] = "float"
    """base64: each vector as little-endian float32 bytes."""
    dimensions: int | None = None
    """If given, must equal the model's output width."""
    user: str | None = None
    layers: Literal["top", "average"] = "average"
    """elmo-lm's extension: the top layer or the layer average, then averaged over the tokens."""


class EmbedRequest(BaseModel):
    """POST /embed: token vectors."""

    model_config = ConfigDict(extra="forbid")
    sentences: list[str | list[str]]
    """Raw texts (tokenized with the built-in tokenizer) or token lists (used as given)."""
    layers: Literal["all", "top", "average"] = "all"
    """all: `(L+1, n, 2P)` per sentence; top or average: `(n, 2P)`."""


def parse_body(body: bytes, schema: type[BaseModel]) -> BaseModel:
    """Decode a body (strict UTF-8 JSON) into `schema`; `RequestError` (400 or 422) if it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not valid UTF-8 (byte {error.start})") from None
    try:
        return schema.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise RequestError(400, f"the body is not valid JSON: {first['msg']}") from None
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise RequestError(422, f"{where}: {first['msg']}{more}") from None


def token_lists(sentences: list[str | list[str]], max_tokens: int, field: str) -> list[list[str]]:
    """Tokenize texts, keep token lists; `RequestError` for nothing to embed or more than `max_tokens`."""
    if not sentences:
        raise RequestError(422, f"{field}: is empty")
    result = []
    total = 0
    for number, sentence in enumerate(sentences):
        tokens = tokenize(sentence) if isinstance(sentence, str) else list(sentence)
        if not tokens:
            raise RequestError(422, f"{field}.{number}: has no tokens")
        total += len(tokens)
        if total > max_tokens:
            raise RequestError(413, f"{field}: more than {max_tokens} tokens in one request (--max-request-tokens)")
        result.append(tokens)
    return result


class NeighboursRequest(BaseModel):
    """POST /api/neighbors (the page): a sentence, one of its words."""

    model_config = ConfigDict(extra="forbid")
    sentence: str
    """Tokens separated by spaces."""
    word: str
    k: int = Field(5, ge=1, le=100)
    same_word: bool = False


class ProjectionRequest(BaseModel):
    """POST /api/projection (the page): a word's occurrences at one layer, and optionally the query's use."""

    model_config = ConfigDict(extra="forbid")
    word: str
    layer: int = Field(ge=0)
    sentence: str | None = None
