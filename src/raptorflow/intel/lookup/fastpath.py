"""`GET /api/v1/lookup` with an API key, answered without FastAPI's dependency solving.

The call SIEM and SOAR integrations make thousands of times a second. Resolving the endpoint's
dependencies (session, principal, org, permission, limits) costs more than the lookup itself, so this
ASGI layer, inside the whole middleware stack (request id, security headers, logs, metrics, gzip),
answers the common case directly with the same building blocks:

- the API key as recently read from the shared cache (`ApiKeyCache.recent`) and checked by the same
  `key_refusal` as every other route;
- the same org, per-credential and monthly limits (`RequestLimits.check_org`);
- the same `LookupService`, on the asyncpg pool in autocommit; lookups of one org arriving while its
  previous statement is in flight share the next one (`CoalescingFinder`).

Everything else — a key this process has not seen in the last second, a key due for its last-used
update, a user token, a wrong or missing parameter, a refused key, SQLite — goes to the FastAPI route,
which gives the same answers and the same errors as before. Nothing is decided here that the route
would decide differently.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from raptorflow.auth import apikeys
from raptorflow.auth.deps import api_key_limit_key, key_refusal
from raptorflow.auth.permissions import Permission, Role, allows
from raptorflow.intel.lookup.repository import CoalescingFinder
from raptorflow.intel.lookup.service import LookupService
from raptorflow.kit.db import utcnow
from raptorflow.kit.errors import RaptorFlowError
from raptorflow.kit.faults import unavailable_response
from raptorflow.kit.web import ORJSONResponse, error_response

PATH = "/api/v1/lookup"
MAX_VALUE = 2048  # as the route's `value` parameter
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
DATABASE_DOWN = (ConnectionError, TimeoutError, socket.gaierror)


class _Template:
    """What the request log and metrics read from `scope["route"]`: the route template."""

    path = PATH


class LookupFastPath:
    """ASGI middleware: answers `GET /api/v1/lookup` itself when it can, else passes it on."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state
        self.route = _Template()
        self.finder: CoalescingFinder | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            handled = await self._answer(scope, receive, send)
            if handled:
                return
        await self.app(scope, receive, send)

    def _credential(self, scope: Scope) -> tuple[str, str | None] | None:
        """(API key secret, X-Organization-ID or None) when the request carries exactly one API key."""
        api_key = authorization = org_header = None
        for name, raw in scope["headers"]:
            if name == b"x-api-key":
                api_key = raw.decode("latin-1").strip()
            elif name == b"authorization":
                authorization = raw.decode("latin-1")
            elif name == b"x-organization-id":
                org_header = raw.decode("latin-1").strip()
        if api_key is not None:
            return None if authorization is not None or not api_key else (api_key, org_header)
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(apikeys.KEY_PREFIX):
            return None
        return token, org_header

    @staticmethod
    def _params(scope: Scope) -> tuple[str, bool] | None:
        """(value, include_expired) when the query string is exactly what the route accepts."""
        try:
            pairs = parse_qsl(
                scope["query_string"].decode("latin-1"), keep_blank_values=True, errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            return None
        value: str | None = None
        include_expired = False
        for name, item in pairs:
            if name == "value":
                if value is not None:
                    return None
                value = item
            elif name == "include_expired":
                flag = item.lower()
                if flag not in _TRUE and flag not in _FALSE:
                    return None
                include_expired = flag in _TRUE
        if value is None or not 1 <= len(value) <= MAX_VALUE:
            return None
        return value, include_expired

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        state = self.state
        pool = state.direct_pool
        credential = self._credential(scope) if pool is not None else None
        params = self._params(scope) if credential is not None else None
        if credential is None or params is None:
            return False
        secret, org_header = credential
        lookup = apikeys.parse(secret)
        key = state.api_key_cache.recent(lookup) if lookup is not None else None
        if key is None:
            return False
        client = scope.get("client")
        if key_refusal(key, secret, client[0] if client else None, utcnow()) is not None:
            return False
        if org_header is not None and org_header != str(key.org_id):
            return False
        if not allows(Role(key.role), Permission.intel_read):
            return False
        scope["route"] = self.route
        scope.setdefault("state", {})["org_id"] = key.org_id
        value, include_expired = params
        # The limits (Redis) and the lookup (PostgreSQL) in flight together: one wait instead of two.
        # The lookup only reads; when a limit refuses, its answer is dropped.
        if self.finder is None or self.finder.pool is not pool:
            self.finder = CoalescingFinder(pool)
        pending = asyncio.ensure_future(
            LookupService.on_pool(pool, key.org_id, self.finder).lookup(
                [value], include_expired=include_expired
            )
        )
        try:
            await state.request_limits.check_org(scope, key.org_id, api_key_limit_key(key.id))
        except RaptorFlowError as exc:
            await asyncio.gather(pending, return_exceptions=True)
            await error_response(Request(scope), exc)(scope, receive, send)
            return True
        except BaseException:
            pending.cancel()
            raise
        try:
            answers = await pending
        except DATABASE_DOWN as exc:  # as the route: a database that cannot be reached is a 503
            # (DirectPool.fetch has sent a statement whose connection was lost once more already; what
            # still fails is kit.db.DatabaseUnavailable, a ConnectionError)
            await unavailable_response(Request(scope), exc)(scope, receive, send)
            return True
        await ORJSONResponse(answers[0])(scope, receive, send)
        return True
