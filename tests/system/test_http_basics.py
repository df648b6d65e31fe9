"""Health, readiness, the API index, OpenAPI, and problem+json for every error."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel

from raptorflow.app import create_app
from tests.conftest import make_settings

PROBLEM = "application/problem+json"


async def test_health_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


async def test_ready_names_a_dead_redis(database_url: str) -> None:
    # Port 1 on loopback refuses connections at once.
    app = create_app(make_settings(database_url, redis_url="redis://127.0.0.1:1/0"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/ready")
    await app.state.engine.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert "redis" in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"


async def test_ready_with_live_redis(database_url: str, redis_url: str) -> None:
    app = create_app(make_settings(database_url, redis_url=redis_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/ready")
    await app.state.engine.dispose()
    await app.state.redis.aclose()
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_ready_names_a_dead_database(tmp_path: Any) -> None:
    app = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/ready")
    await app.state.engine.dispose()
    assert response.status_code == 503
    assert "database" in response.json()["detail"]


async def test_api_index_lists_links(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1")).json()
    assert body["name"] == "RaptorFlow"
    assert body["version"]
    assert body["links"]["openapi"].endswith("/openapi.json")


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/health" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_docs_need_no_network(client: httpx.AsyncClient) -> None:
    """/docs loads every file from this server: no CDN, no inline script, a CSP allowing only 'self'."""
    docs = await client.get("/docs")
    csp = docs.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'", csp
    assert "http" not in csp, csp
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert len(sources) >= 3, docs.text
    assert "<script>" not in docs.text, "an inline script would need 'unsafe-inline'"
    for source in sources:
        assert source.startswith("/"), f"{source} is not served by this process"
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert asset.content, source
    bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in bundle.content
    again = await client.get(
        "/docs/assets/swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["etag"]}
    )
    assert again.status_code == 304
    assert (await client.get("/docs/assets/core.py")).status_code == 404
    assert (await client.get("/docs/assets/nothing.js")).status_code == 404


async def test_unknown_path_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "request_id"}
    assert body["status"] == 404
    assert body["request_id"] == response.headers["x-request-id"]


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert "DELETE" in response.json()["detail"]


class _Payload(BaseModel):
    name: str
    count: int


@pytest.fixture
async def probe_client(database_url: str) -> Any:
    """An app with two extra routes: one that validates a body, one that crashes."""
    app = create_app(make_settings(database_url))

    @app.post("/_probe/echo")
    async def echo(payload: _Payload) -> dict[str, Any]:
        return payload.model_dump()

    @app.get("/_probe/crash")
    async def crash() -> None:
        raise RuntimeError("SELECT secret_column FROM hidden_table -- boom")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as http:
        yield http
    await app.state.engine.dispose()


async def test_validation_error_names_each_field(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/_probe/echo", json={"name": "x", "count": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["body.count"]
    assert "integer" in errors[0]["message"]


async def test_malformed_json_is_a_problem(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/_probe/echo", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"][0]["field"].startswith("body")


async def test_crash_is_a_500_problem_without_internals(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/_probe/crash", headers={"x-request-id": "crash-test-0001"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "crash-test-0001"
    body = response.json()
    assert body["request_id"] == "crash-test-0001"
    text = response.text
    assert "SELECT" not in text and "Traceback" not in text and "RuntimeError" not in text


async def test_request_id_is_kept_when_well_formed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"x-request-id": "abc-123-DEF_456"})
    assert response.headers["x-request-id"] == "abc-123-DEF_456"


async def test_request_id_is_replaced_when_malformed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"x-request-id": "bad id\twith spaces<script>"})
    assigned = response.headers["x-request-id"]
    assert assigned != "bad id\twith spaces<script>"
    assert len(assigned) == 32
    generated = (await client.get("/health")).headers["x-request-id"]
    assert generated != assigned


async def test_responses_are_orjson(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1")
    assert orjson.loads(response.content)["name"] == "RaptorFlow"


async def test_database_conflicts_are_409_problems(database_url: str) -> None:
    from sqlalchemy.exc import IntegrityError

    app = create_app(make_settings(database_url))

    @app.get("/_probe/race")
    async def race() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key value violates unique constraint"))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/_probe/race")
    await app.state.engine.dispose()
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert "duplicate key" not in response.text and "INSERT" not in response.text


def test_ids_are_time_ordered_uuid7() -> None:
    import time

    from raptorflow.kit.db import new_id

    first = new_id()
    time.sleep(0.002)
    later = [new_id() for _ in range(1000)]
    assert first.version == 7 and first.variant == "specified in RFC 4122"
    assert all(first < x for x in later)
    assert len(set(later)) == 1000
    assert abs(int(first.hex[:12], 16) - time.time_ns() // 1_000_000) < 5_000


def test_new_ids_are_distinct_time_ordered_uuid7() -> None:
    """Bulk inserts take their primary keys from `new_ids`: RFC 9562 version 7, variant 10, the current
    millisecond in the first 48 bits (rows land at the end of the primary-key index), all distinct."""
    import time as _time

    from raptorflow.kit.db import new_id, new_ids

    before = _time.time_ns() // 1_000_000
    ids = new_ids(2_000)
    after = _time.time_ns() // 1_000_000
    assert len(set(ids)) == 2_000
    for made in (*ids, new_id()):
        assert made.version == 7 and (made.int >> 62) & 0b11 == 0b10
        assert before <= made.int >> 80 <= after + 1_000
    assert new_ids(0) == []
