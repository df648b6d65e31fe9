"""HTTP hardening: security headers, no-store, HSTS, CORS, gzip, body size limit, JSON depth cap."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from raptorflow.app import create_app
from raptorflow.kit.middleware import json_depth_exceeds
from tests.conftest import make_settings, sign_up

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def small_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a 4 KB body limit, https public URL, one CORS origin."""
    application = create_app(
        make_settings(
            database_url,
            max_body_bytes=4096,
            public_url="https://tip.example.com",
            cors_origins=["https://console.example.com"],
        )
    )
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await application.state.engine.dispose()


async def test_security_headers_everywhere_and_no_store_on_api(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/v1", "/api/v1/does-not-exist"):
        response = await client.get(path)
        for name, value in SECURITY.items():
            assert response.headers[name] == value, (path, name)
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "camera=()" in response.headers["permissions-policy"]
        assert "strict-transport-security" not in response.headers  # public URL is http by default
    assert (await client.get("/api/v1")).headers["cache-control"] == "no-store"
    assert "cache-control" not in (await client.get("/health")).headers


async def test_hsts_and_cors_from_settings(small_client: httpx.AsyncClient) -> None:
    response = await small_client.get("/health")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    preflight = await small_client.options(
        "/api/v1/jobs",
        headers={"Origin": "https://console.example.com", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization,x-organization-id"},
    )  # fmt: skip
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://console.example.com"
    stranger = await small_client.get("/api/v1", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


async def test_gzip_above_one_kilobyte(client: httpx.AsyncClient) -> None:
    big = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert orjson.loads(big.content)["openapi"]  # httpx decoded it
    small = await client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    raw = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert len(gzip.compress(raw.content)) < len(raw.content)


async def test_body_limit_413_by_length_and_by_stream(small_client: httpx.AsyncClient) -> None:
    body = orjson.dumps({"email": "x@example.com", "password": "p" * 5000, "name": "n"})
    declared = await small_client.post(
        "/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"
    assert "4096" in declared.json()["detail"] and declared.json()["request_id"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"a" * 1000

    streamed = await small_client.post(
        "/api/v1/auth/token", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    ok = await small_client.post(
        "/api/v1/auth/register", json={"email": "y@example.com", "password": "short"}
    )
    assert ok.status_code == 422  # under the limit: reaches validation


async def test_json_depth_cap(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "depth@example.com")
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": [deep]}
    refused = await client.post("/api/v1/organizations", json={"name": "n", "slug": "s", "x": deep},
                                headers=actor.headers)  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body"
    assert "32" in refused.json()["detail"]


def test_json_depth_measure_ignores_brackets_in_strings() -> None:
    assert not json_depth_exceeds(orjson.dumps({"v": "[[[[[[[[[[" * 10}), 3)
    assert not json_depth_exceeds(orjson.dumps({"items": [{"a": [1]} for _ in range(500)]}), 3)
    assert json_depth_exceeds(orjson.dumps({"a": {"b": {"c": [1]}}}), 3)
    assert not json_depth_exceeds(b'{"a": "\\" [[[[ {{{{"}', 2)
    assert json_depth_exceeds(b"[" * 50, 32) is False  # unbalanced: left to the JSON parser
    assert json_depth_exceeds(b"[" * 40 + b"]" * 40, 32)


async def test_a_response_keeps_its_own_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/health", "/api/v1"):
        response = await client.get(path)
        for name in ("content-security-policy", "x-frame-options", "referrer-policy", "cache-control"):
            assert len(response.headers.get_list(name)) <= 1, (path, name, response.headers.get_list(name))
        assert len(response.headers.get_list("x-frame-options")) == 1


async def test_streaming_response_after_a_checked_json_body_is_not_cut_short() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from raptorflow.kit.middleware import BodyLimitMiddleware

    async def echo(request: Request) -> StreamingResponse:
        count = int((await request.json())["count"])

        async def lines() -> AsyncIterator[bytes]:
            for i in range(count):
                await asyncio.sleep(0)  # give a disconnect listener the chance to (wrongly) stop us
                yield f"{i}\n".encode()

        return StreamingResponse(lines())

    inner = Starlette(routes=[Route("/stream", echo, methods=["POST"])])
    wrapped = BodyLimitMiddleware(inner, max_bytes=4096, max_json_depth=8)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as http:
        response = await http.post("/stream", json={"count": 50})
    assert response.text.splitlines() == [str(i) for i in range(50)]


async def _raw_response(app: Any, accept: str) -> tuple[dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"accept-encoding", accept.encode())]}
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    return headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("streamed", [False, True])
async def test_isal_gzip_is_standard_gzip(streamed: bool) -> None:
    """ISA-L's gzip (one body, or a stream of chunks flushed one by one, below and above the size that
    goes to a worker thread) is read back by the standard library as the exact bytes sent."""
    from raptorflow.kit.middleware import IsalGZipMiddleware

    parts = [orjson.dumps({"n": i, "text": "indicator " * (i * 4000)}) for i in range(1, 6)]
    original = b"".join(parts)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json")]
        if not streamed:
            headers.append((b"content-length", str(len(original)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunks = parts if streamed else [original]
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    middleware = IsalGZipMiddleware(app, minimum_size=1024, compresslevel=1)
    headers, body = await _raw_response(middleware, "gzip, deflate")
    assert headers[b"content-encoding"] == b"gzip"
    assert len(body) < len(original) / 10
    assert gzip.decompress(body) == original
    plain_headers, plain = await _raw_response(middleware, "identity")
    assert b"content-encoding" not in plain_headers and plain == original
