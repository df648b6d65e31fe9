"""Schemathesis: every operation of the OpenAPI document, fuzzed as the owner of an organization.

One pytest item per operation and database backend (`test_api[GET /health][sqlite]`). Each request carries
`Authorization: Bearer <owner's token>` and `X-Organization-ID: <owner's org>`; path ids (`org_id`, and the
org's member, invitation, workspace and API key, and a spare session) name the tenant's own resources in 3
examples out of 4, so authorization passes and the handlers run, and whatever Schemathesis generated otherwise.

Nothing is excluded: destructive operations (delete the org or the account, leave, transfer ownership, any
DELETE) are fuzzed too, and after one succeeds the tenant is provisioned again (a new org, or a new owner
when the account is gone), so later examples still act as a signed-in owner.

Examples per operation: `RAPTORFLOW_FUZZ_EXAMPLES` (8 by default, derandomized so CI is reproducible;
`make fuzz` runs 500).
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator
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

from raptorflow.app import create_app
from tests.conftest import PASSWORD, Actor, create_org, make_settings, sign_in, sign_up, truncate_all

EXAMPLES = int(os.environ.get("RAPTORFLOW_FUZZ_EXAMPLES", "8"))
BASE_URL = "http://testserver"
ORGS = "/api/v1/organizations"
# The tenant's own requests come from another address than the fuzzed ones, which may fail sign-ins
# often enough to be throttled per address.
SETUP_CLIENT = ("10.9.8.7", 4000)


def _fresh_email() -> str:
    return f"fuzz-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Tenant:
    """The signed-in org owner every fuzzed request acts as, and the ids of its org's resources."""

    http: httpx.AsyncClient
    owner: Actor | None = None
    member_email: str = ""
    org_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        assert self.owner is not None
        return self.owner.in_org(self.org_id)

    async def sign_up_owner(self) -> None:
        """A new owner (with a spare second session) and a new org."""
        email = _fresh_email()
        self.owner = await sign_up(self.http, email, "Fuzz Owner")
        spare = await sign_in(self.http, email, PASSWORD, self.owner.user_id)
        sessions = await self.http.get("/api/v1/users/me/sessions", headers=spare.headers)
        assert sessions.status_code == 200, sessions.text
        self.ids["session_id"] = next(s["id"] for s in sessions.json()["items"] if s["current"])
        if not self.member_email:
            self.member_email = _fresh_email()
            member = await sign_up(self.http, self.member_email, "Fuzz Member")
            self.ids["user_id"] = member.user_id
        await self.create_org()

    async def create_org(self) -> None:
        """A new org owned by the owner, with a member, an invitation, a workspace and an API key."""
        assert self.owner is not None
        self.org_id = await create_org(self.owner, f"fuzz-{uuid.uuid4().hex[:12]}")
        base = f"{ORGS}/{self.org_id}"
        added = await self.http.post(
            f"{base}/members", json={"email": self.member_email, "role": "editor"}, headers=self.headers
        )
        assert added.status_code == 201 and added.json()["status"] == "added", added.text
        invited = await self.http.post(
            f"{base}/members", json={"email": _fresh_email(), "role": "viewer"}, headers=self.headers
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

    async def recover(self) -> None:
        """Provision again after a destructive call succeeded: a new owner if the account is gone."""
        me = await self.http.get("/api/v1/users/me", headers=self.headers)
        if me.status_code == 401:
            await self.sign_up_owner()
        else:
            assert me.status_code == 200, me.text
            await self.create_org()


class ASGIOnLoopAdapter(BaseAdapter):
    """A `requests` adapter handing each request to the app through httpx, on pytest-asyncio's session loop.

    Schemathesis sends requests synchronously (through `requests`); the app's engine and its pooled
    connections belong to the session loop the `app` fixture runs on, which is idle while a sync test
    runs, so every request is run to completion there.
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


@dataclass
class FuzzEnv:
    """What the fuzz test needs: the loop, a `requests` session reaching the app, and the tenant."""

    loop: asyncio.AbstractEventLoop
    session: requests.Session
    tenant: Tenant


# The hooks below run while Schemathesis generates a case; they aim at the tenant of the running test.
_current: list[FuzzEnv] = []


@pytest.fixture(scope="module")
async def fuzz_env(app: Any) -> AsyncIterator[FuzzEnv]:
    """The tenant on this backend's app, shared by the module's tests; tables are emptied afterwards."""
    fuzzed = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    own = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=SETUP_CLIENT)
    async with (
        httpx.AsyncClient(transport=fuzzed, base_url=BASE_URL) as http,
        httpx.AsyncClient(transport=own, base_url=BASE_URL) as setup_http,
    ):
        tenant = Tenant(setup_http)
        await tenant.sign_up_owner()
        session = requests.Session()
        session.mount("http://", ASGIOnLoopAdapter(asyncio.get_running_loop(), http))
        env = FuzzEnv(asyncio.get_running_loop(), session, tenant)
        _current.append(env)
        try:
            yield env
        finally:
            _current.remove(env)
            session.close()
    await truncate_all(app)
    await app.state.limiter.storage.reset()
    await app.state.token_issuer.reload(force=True)


def _served_document() -> dict[str, Any]:
    # The document depends on the code only: build it from an instance that never connects to its database.
    return create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()


_DIAG = os.environ.get("FUZZ_DIAG")
schema = schemathesis.openapi.from_dict(_served_document() if _DIAG else _served_document())


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """In 3 examples out of 4, path ids name the tenant's own org and resources."""
    if not path_parameters:
        return st.just(path_parameters)
    tenant = _current[-1].tenant
    own = {"org_id": tenant.org_id, **tenant.ids}
    aimed = {name: own[name] for name in path_parameters if name in own}
    if not aimed:
        return st.just(path_parameters)
    return st.sampled_from([True, True, True, False]).map(
        lambda use: {**path_parameters, **aimed} if use else path_parameters
    )


# Succeeding, these change who the tenant is or what it owns: provision it again before the next example.
def _destructive(case: Any) -> bool:
    return case.method.upper() == "DELETE" or case.path.endswith(("/leave", "/transfer-ownership"))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 50,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, fuzz_env: FuzzEnv) -> None:
    tenant = fuzz_env.tenant
    headers = tenant.headers
    response = case.call(base_url=BASE_URL, session=fuzz_env.session, headers=headers)
    if _destructive(case) and response.status_code < 300:
        fuzz_env.loop.run_until_complete(tenant.recover())
    checks = None
    if _DIAG and _DIAG != "all":
        from schemathesis.checks import CHECKS
        checks = [CHECKS.get_one(name) for name in _DIAG.split(",")]
    case.validate_response(
        response,
        checks=checks,
        headers=headers,
        transport_kwargs={"base_url": BASE_URL, "session": fuzz_env.session, "headers": headers},
    )
