"""Schemathesis fuzzing of every operation of the OpenAPI document, as the owner of an organization."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPHeaderDict, HTTPResponse

from tests.conftest import PASSWORD, Actor, create_org, sign_in, sign_up

EXAMPLES = int(os.environ.get("RAPTORFLOW_FUZZ_EXAMPLES", "8"))
BASE_URL = "http://testserver"
ORGS = "/api/v1/organizations"


@dataclass
class Tenant:
    """The signed-in org owner every fuzzed request acts as, and resources of its org to aim ids at."""

    http: httpx.AsyncClient
    owner: Actor | None = None
    org_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        assert self.owner is not None
        return self.owner.in_org(self.org_id)

    async def sign_up_owner(self) -> None:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        self.owner = await sign_up(self.http, email, "Fuzz Owner")
        # A second session of the same user: the one `session_id` aims at (revoking it is harmless).
        spare = await sign_in(self.http, email, PASSWORD, self.owner.user_id)
        sessions = await self.http.get("/api/v1/users/me/sessions", headers=spare.headers)
        assert sessions.status_code == 200, sessions.text
        self.ids["session_id"] = next(s["id"] for s in sessions.json()["items"] if s["current"])
        await self.create_org()

    async def create_org(self) -> None:
        assert self.owner is not None
        slug = f"fuzz-{uuid.uuid4().hex[:12]}"
        self.org_id = await create_org(self.owner, slug)
        base = f"{ORGS}/{self.org_id}"
        member = await sign_up(self.http, f"fuzz-{uuid.uuid4().hex[:12]}@example.com", "Fuzz Member")
        added = await self.http.post(
            f"{base}/members", json={"email": member.email, "role": "editor"}, headers=self.headers
        )
        assert added.status_code == 201, added.text
        self.ids["user_id"] = member.user_id
        invited = await self.http.post(
            f"{base}/members",
            json={"email": f"fuzz-{uuid.uuid4().hex[:12]}@example.com", "role": "viewer"},
            headers=self.headers,
        )
        assert invited.status_code == 201, invited.text
        self.ids["invitation_id"] = invited.json()["invitation"]["id"]
        workspace = await self.http.post(f"{base}/workspaces", json={"name": "fuzz"}, headers=self.headers)
        assert workspace.status_code == 201, workspace.text
        self.ids["workspace_id"] = workspace.json()["id"]
        key = await self.http.post(
            f"{base}/api-keys", json={"name": "fuzz", "role": "viewer"}, headers=self.headers
        )
        assert key.status_code == 201, key.text
        self.ids["key_id"] = key.json()["id"]


class ASGIOnLoopAdapter(BaseAdapter):
    """A `requests` adapter that hands each request to the app through httpx, on the session's event loop.

    Schemathesis calls the API synchronously (through `requests`); the app's engine and its pooled
    connections belong to pytest-asyncio's session loop, so every request runs there.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient) -> None:
        super().__init__()
        self.loop = loop
        self.http = http
        self._builder = HTTPAdapter()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        response = self.loop.run_until_complete(
            self.http.request(
                request.method or "GET", request.url or "", headers=dict(request.headers), content=body
            )
        )
        raw = HTTPResponse(
            body=io.BytesIO(response.content),
            headers=HTTPHeaderDict(response.headers.multi_items()),
            status=response.status_code,
            reason=response.reason_phrase,
            version=11,
            preload_content=False,
            decode_content=False,
        )
        return self._builder.build_response(request, raw)

    def close(self) -> None:
        self._builder.close()


@pytest.fixture
async def event_loop_now() -> asyncio.AbstractEventLoop:
    """The (session-scoped) loop the app fixture runs on."""
    return asyncio.get_running_loop()


@pytest.fixture
async def tenant(app: Any) -> Any:
    """A signed-in owner of a fresh org; its own client address, so fuzzed sign-in failures don't throttle it."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.9.8.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        state = Tenant(http)
        await state.sign_up_owner()
        yield state


@pytest.fixture
def api_session(
    event_loop_now: asyncio.AbstractEventLoop, client: httpx.AsyncClient
) -> Iterator[requests.Session]:
    """A requests session whose requests reach the app in-process (the `client` fixture empties tables after)."""
    session = requests.Session()
    session.mount("http://", ASGIOnLoopAdapter(event_loop_now, client))
    yield session
    session.close()


@pytest.fixture
def api_schema(app: Any, tenant: Tenant) -> Any:
    """The app's OpenAPI document; path ids mostly name the tenant's own resources."""
    schema = schemathesis.openapi.from_dict(app.openapi())

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        aimed = {name: tenant.ids[name] for name in path_parameters if name in tenant.ids}
        if "org_id" in path_parameters:
            aimed["org_id"] = tenant.org_id
        if not aimed:
            return st.just(path_parameters)
        # Mostly the tenant's own resources (so authorization and handlers run); sometimes what was generated.
        return st.sampled_from([True, True, True, False]).map(
            lambda use: {**path_parameters, **aimed} if use else path_parameters
        )

    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 50,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_api(case: Any, api_session: requests.Session, tenant: Tenant, event_loop_now: Any) -> None:
    response = case.call_and_validate(base_url=BASE_URL, session=api_session, headers=tenant.headers)
    del response
