"""One structured log line per request, with no secrets in it."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import structlog

from raptorflow.app import create_app
from raptorflow.kit.logging import configure_logging, get_logger
from tests.conftest import make_settings


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(orjson.loads(line))
    return out


async def test_each_request_is_logged_once_without_secrets(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(database_url))
    secret = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        capsys.readouterr()
        response = await http.get(
            "/api/v1",
            headers={
                "Authorization": f"Bearer {secret}",
                "Cookie": "rf_session=cookie-value-123456",
                "X-Request-ID": "log-test-000001",
            },
        )
    await app.state.engine.dispose()
    assert response.status_code == 200
    out = capsys.readouterr()
    logged = out.err + out.out
    requests = [e for e in _json_lines(logged) if e.get("event") == "request"]
    assert len(requests) == 1
    entry = requests[0]
    assert entry["method"] == "GET"
    assert entry["route"] == "/api/v1"
    assert entry["status"] == 200
    assert entry["request_id"] == "log-test-000001"
    assert isinstance(entry["duration_ms"], float | int)
    assert secret not in logged
    assert "cookie-value-123456" not in logged


async def test_route_template_is_logged_not_the_raw_path(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(database_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        capsys.readouterr()
        await http.get("/nowhere/42")
    await app.state.engine.dispose()
    entries = [e for e in _json_lines(capsys.readouterr().err) if e.get("event") == "request"]
    assert entries[0]["status"] == 404


def test_secret_fields_and_shapes_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json", level="INFO")
    structlog.contextvars.clear_contextvars()
    get_logger("t").info(
        "probe",
        password="hunter2-hunter2",
        refresh_token="opaque-refresh-abc",
        headers={"authorization": "Basic dXNlcjpwYXNz", "accept": "text/html"},
        note="key rf_abcdefghijklmnop1234 was used",
    )
    text = capsys.readouterr().err
    entry = _json_lines(text)[-1]
    assert entry["password"] == "[redacted]"
    assert entry["refresh_token"] == "[redacted]"
    assert entry["headers"]["authorization"] == "[redacted]"
    assert entry["headers"]["accept"] == "text/html"
    assert "rf_abcdefghijklmnop1234" not in text
    assert "hunter2" not in text


def test_console_format_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="console", level="INFO")
    get_logger("t").info("hello.console", answer=42)
    text = capsys.readouterr().err
    assert "hello.console" in text and "answer" in text
    assert not text.strip().startswith("{")
    configure_logging(fmt="json", level="INFO")
