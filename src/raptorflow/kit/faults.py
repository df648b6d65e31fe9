"""A database that cannot be reached answers 503 (retry later), not 500 (our bug)."""

from __future__ import annotations

import socket
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from raptorflow.kit.logging import get_logger
from raptorflow.kit.web import _on_database_error as web_database_error
from raptorflow.kit.web import problem_response

log = get_logger("raptorflow.http")
UNAVAILABLE = "The database is unreachable right now; retry shortly."


def unavailable_response(request: Request, exc: BaseException) -> Response:
    """503 problem with Retry-After for a database that cannot be reached (logged)."""
    log.error("request.database_unavailable", error=type(exc).__name__, path=request.url.path)
    return problem_response(request, 503, UNAVAILABLE, headers={"Retry-After": "5"})


async def _on_connection_error(request: Request, exc: Exception) -> Response:
    # asyncpg raises ConnectionRefusedError, TimeoutError or a DNS error when it cannot connect at all.
    return unavailable_response(request, exc)


def _lost_connection(exc: DBAPIError) -> bool:
    orig = exc.orig
    text = f"{type(orig).__name__} {orig}".lower()
    return bool(exc.connection_invalidated or isinstance(orig, OSError) or "connection" in text)


async def _on_driver_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DBAPIError)
    if _lost_connection(exc):
        # SQLAlchemy has invalidated the pool: the next checkout reconnects (no app restart needed).
        return unavailable_response(request, exc)
    # Every other driver error keeps kit.web's rendering (NUL characters → 422, the rest → 500).
    return await web_database_error(request, exc)


async def _on_pool_timeout(request: Request, exc: Exception) -> Response:
    return unavailable_response(request, exc)


def install_fault_handlers(app: FastAPI) -> None:
    """Map lost or refused database connections (and an exhausted pool) to 503 problems.

    Call after kit.web.install_problem_handlers: this replaces its DBAPIError handler (delegating to it).
    """
    handlers: list[tuple[Any, Any]] = [
        (ConnectionError, _on_connection_error),
        (TimeoutError, _on_connection_error),
        (socket.gaierror, _on_connection_error),
        (DBAPIError, _on_driver_error),
        (PoolTimeout, _on_pool_timeout),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)
