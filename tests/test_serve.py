"""`elmo serve`: the endpoints in-process (ASGI transport), then a real uvicorn process on 127.0.0.1.

Skipped when the `serve` extra (fastapi, uvicorn, httpx) is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'elmo-lm[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'elmo-lm[serve]'")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed: pip install 'elmo-lm[serve]'")

from conftest import PROJECT_ROOT  # noqa: E402
from elmo_lm import Embedder  # noqa: E402
from elmo_lm.serve import ServeSettings, create_app  # noqa: E402

SENTENCES = [
    "They walked along the bank of the river .",
    "The bank raised its rates .",
    "Play it again .",
    "A sentence with quite a few more words than the others have in it .",
    "Short .",
]


def run(coroutine):
    return asyncio.run(coroutine)


async def _post_all(app, path: str, bodies: list) -> list:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        return await asyncio.gather(*(client.post(path, **body) for body in bodies))


def _app(embedder: Embedder, **settings):
    app = create_app(embedder, ServeSettings(**settings))
    return app


def test_openai_embeddings_equal_offline_encode(bundled_embedder):
    app = _app(bundled_embedder)
    try:
        plain, encoded, single = (run(_post_all(app, "/v1/embeddings", [request]))[0] for request in (
            {"json": {"input": SENTENCES, "model": "x"}},
            {"json": {"input": SENTENCES, "encoding_format": "base64"}},
            {"json": {"input": SENTENCES[0]}},
        ))  # one after the other: each request is a flush of its own
    finally:
        app.state.batcher.close()
    expected = bundled_embedder.encode(SENTENCES, layers="average", output="sentence")  # (N, 2P)
    body = plain.json()
    assert plain.status_code == 200 and body["object"] == "list" and body["model"] == "x"
    assert [item["index"] for item in body["data"]] == list(range(len(SENTENCES)))
    assert body["usage"]["prompt_tokens"] == sum(len(s.split()) for s in SENTENCES)
    got = np.array([item["embedding"] for item in body["data"]], np.float32)
    np.testing.assert_array_equal(got, expected)
    decoded = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), "<f4") for item in encoded.json()["data"]])
    np.testing.assert_array_equal(decoded, expected)
    alone = bundled_embedder.encode([SENTENCES[0]], layers="average", output="sentence")
    np.testing.assert_array_equal(np.array(single.json()["data"][0]["embedding"], np.float32), alone[0])


@pytest.mark.parametrize("layers", ["all", "top", "average"])
def test_token_vectors_equal_offline_encode(bundled_embedder, layers):
    app = _app(bundled_embedder)
    sentences = SENTENCES[:3] + [["token", "lists", "as", "given"]]
    try:
        (response,) = run(_post_all(app, "/embed", [{"json": {"sentences": sentences, "layers": layers}}]))
    finally:
        app.state.batcher.close()
    assert response.status_code == 200
    expected = bundled_embedder.encode(sentences, layers=layers)
    for item, want in zip(response.json()["data"], expected, strict=True):
        np.testing.assert_array_equal(np.array(item["embedding"], np.float32), want)
    assert response.json()["data"][3]["tokens"] == ["token", "lists", "as", "given"]


def test_concurrent_requests_are_batched_and_exact(bundled_embedder):
    """Requests waiting together form one flush, whose vectors are `encode`'s for those sentences."""
    sentences = [" ".join(["word"] * n) + " ." for n in range(1, 13)]  # distinct lengths: one sorted order
    total = sum(n + 1 for n in range(1, 13))
    app = _app(bundled_embedder, max_batch_tokens=total, max_wait_ms=10_000)
    try:
        responses = run(_post_all(app, "/v1/embeddings", [{"json": {"input": s}} for s in sentences]))
        assert app.state.batcher.stats.flushes == 1
    finally:
        app.state.batcher.close()
    expected = bundled_embedder.encode(sentences, layers="average", output="sentence")
    for response, want in zip(responses, expected):
        np.testing.assert_array_equal(np.array(response.json()["data"][0]["embedding"], np.float32), want)


def test_thousands_of_tiny_requests(bundled_embedder):
    words = ["a", "bank", "river", "play", "the", "."]
    app = _app(bundled_embedder, max_batch_tokens=512, max_wait_ms=2)
    try:
        responses = run(_post_all(app, "/v1/embeddings", [{"json": {"input": words[i % 6]}} for i in range(2000)]))
        flushes = app.state.batcher.stats.flushes
    finally:
        app.state.batcher.close()
    assert all(response.status_code == 200 for response in responses)
    expected = bundled_embedder.encode([[w] for w in words], layers="average", output="sentence")  # (6, 2P)
    for i, response in enumerate(responses):
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected[i % 6], atol=1e-5)
    assert flushes < 2000 / 10  # batched, not one model call per request


BAD_REQUESTS = [
    ("/v1/embeddings", {"content": b'{"input": ["unclosed"'}, 400, "not valid JSON"),
    ("/v1/embeddings", {"content": b'{"input": "caf\xe9"}'}, 400, "not valid UTF-8"),
    ("/v1/embeddings", {"json": {"input": 5}}, 422, "input"),
    ("/v1/embeddings", {"json": {"input": [1, 2, 3]}}, 422, "input"),
    ("/v1/embeddings", {"json": {"input": ["fine", None]}}, 422, "input"),
    ("/v1/embeddings", {"json": {"nothing": "here"}}, 422, "input: Field required"),
    ("/v1/embeddings", {"json": {"input": []}}, 422, "input: is empty"),
    ("/v1/embeddings", {"json": {"input": "   "}}, 422, "input.0: has no tokens"),
    ("/v1/embeddings", {"json": {"input": "x", "encoding_format": "hex"}}, 422, "encoding_format"),
    ("/v1/embeddings", {"json": {"input": "x", "dimensions": 3}}, 422, "dimensions"),
    ("/v1/embeddings", {"json": {"input": "word " * 101}}, 413, "more than 100 tokens"),
    ("/v1/embeddings", {"json": {"input": ["x" * 3000]}}, 413, "bytes, more than 2000"),
    ("/embed", {"json": {"sentences": ["ok"], "layers": "bottom"}}, 422, "layers"),
    ("/embed", {"json": {"sentences": [["ok"], []]}}, 422, "sentences.1: has no tokens"),
    ("/embed", {"json": {"sentences": ["ok"], "extra": 1}}, 422, "extra"),
    ("/embed", {"json": ["not", "an", "object"]}, 422, ""),
]


def test_bad_requests_get_json_errors_and_the_service_keeps_serving(bundled_embedder):
    app = _app(bundled_embedder, max_request_tokens=100, max_request_bytes=2000)
    bodies = [request for _, request, _, _ in BAD_REQUESTS]
    try:
        responses = [run(_post_all(app, path, [body]))[0] for (path, *_), body in zip(BAD_REQUESTS, bodies)]
        (after,) = run(_post_all(app, "/v1/embeddings", [{"json": {"input": "still serving ."}}]))
    finally:
        app.state.batcher.close()
    for (path, body, status, message), response in zip(BAD_REQUESTS, responses):
        assert response.status_code == status, (path, body, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and message in error["message"], error
    assert after.status_code == 200


def test_health_and_info(bundled_embedder):
    app = _app(bundled_embedder, max_batch_tokens=77)

    async def get():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get("/healthz"), await client.get("/info")

    try:
        health, info = run(get())
    finally:
        app.state.batcher.close()
    assert health.json() == {"status": "ok"}
    body = info.json()
    assert body["dimensions"] == bundled_embedder.model.config.output_dim and body["layers"] == 3
    assert body["settings"]["max_batch_tokens"] == 77


# --- a real uvicorn process -------------------------------------------------------------------------------

def _start_server(*arguments: str) -> tuple[subprocess.Popen, str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", "serve", "--port", "0", "--threads", "1",
                                *arguments], cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.startswith("elmo: serving on "):
            url = line.split()[-1]
            break
        if not line and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
    else:
        process.kill()
        raise AssertionError("the server did not start within 60 s")
    for _ in range(100):  # the socket is bound before uvicorn starts answering
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server never answered /healthz")


@pytest.fixture(scope="module")
def server():
    process, url = _start_server("--max-wait-ms", "2")
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_real_server_answers_while_clients_stall_or_vanish(server, bundled_embedder):
    host, port = server.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)))  # sends half a request, then nothing
    stalled.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"input\": \"")
    for _ in range(5):  # clients that send a whole request and hang up before the answer
        gone = socket.create_connection((host, int(port)))
        body = json.dumps({"input": ["a long sentence to keep the worker busy"] * 50}).encode()
        gone.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        gone.close()
    started = time.monotonic()
    response = httpx.post(server + "/v1/embeddings", json={"input": SENTENCES}, timeout=30)
    assert response.status_code == 200 and time.monotonic() - started < 20
    got = np.array([item["embedding"] for item in response.json()["data"]], np.float32)
    np.testing.assert_allclose(got, bundled_embedder.encode(SENTENCES, layers="average", output="sentence"), atol=1e-5)
    assert httpx.post(server + "/embed", content=b"\xff\xfe", timeout=10).status_code == 400
    stalled.close()


def test_sigterm_finishes_the_request_in_flight_then_exits():
    process, url = _start_server("--max-request-tokens", "100000")
    sentences = ["the river bank was muddy after the long rain of the previous week ."] * 400  # seconds of work
    result = {}

    def post():
        result["response"] = httpx.post(url + "/v1/embeddings", json={"input": sentences}, timeout=120)

    client = threading.Thread(target=post)
    client.start()
    try:
        for _ in range(200):  # wait until the worker has the request
            info = httpx.get(url + "/info", timeout=5).json()
            if info["in_flight"] > 0 and info["waiting"] == 0:  # the worker has it
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    response = result["response"]
    assert response.status_code == 200 and len(response.json()["data"]) == 400
    assert "elmo: stopped" in process.stderr.read()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz", timeout=2)

