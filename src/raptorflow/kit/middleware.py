"""Pure ASGI middleware: request id, access log, and last-resort error rendering."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raptorflow.kit.errors import PROBLEM_MEDIA_TYPE, problem_body

REQUEST_ID_HEADER = b"x-request-id"
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
log = structlog.get_logger("raptorflow.http")


def request_id_of(scope: Scope) -> str | None:
    """The request id assigned to this request by RequestContextMiddleware."""
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


class RequestContextMiddleware:
    """Assign or keep X-Request-ID, echo it, log each request once, render crashes as problems."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == REQUEST_ID_HEADER:
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _WELL_FORMED_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("request.unhandled_error", path=scope.get("path"))
            if not response_started:
                await self._send_500(send_wrapper, request_id, scope.get("path"))
            status = 500
        finally:
            route = scope.get("route")
            self._log(scope, route, status, started)

    @staticmethod
    async def _send_500(send: Send, request_id: str, path: Any) -> None:
        body = orjson.dumps(
            problem_body(
                status=500,
                title="Internal Server Error",
                detail="An unexpected error occurred; quote the request_id when reporting it.",
                request_id=request_id,
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, route: Any, status: int, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        template = getattr(route, "path", None) or scope.get("path")
        state = scope.get("state") or {}
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "route": template,
            "status": status,
            "duration_ms": duration_ms,
        }
        for key in ("org_id", "user_id"):
            if state.get(key) is not None:
                fields[key] = str(state[key])
        if status >= 500:
            log.error("request", **fields)
        else:
            log.info("request", **fields)
