"""Schemathesis: every operation of the served OpenAPI document, every check, fuzzed as an org's owner.

`test_api` is one pytest item per operation and database backend (`test_api[GET /health][sqlite]`), run
through Schemathesis' pytest integration (`schema.parametrize()` on `schemathesis.openapi.from_dict`) with
all of its checks: server errors, status codes, content types, response schemas and headers, `Allow` on
405, and both data checks (a schema-valid request must not be refused with 400/422, a schema-violating
one must be). The document is the one the app serves, unchanged.

Every request carries `Authorization: Bearer <owner's token>` and `X-Organization-ID: <owner's org>`
(unless the case sends its own header: a well-formed one is aimed at the owner's org, a malformed one
stays). Path ids (`org_id`; the org's member, invitation, workspace and API key; a spare session of the
owner; one seeded intel object of each kind; whatever fuzzed requests created, from their `Location`),
and ids under those names in bodies (`project_id`, `user_id`...), name the tenant's own resources in 3
fuzzed examples out of 4 and in every coverage case whose id is a well-formed UUID, so handlers do run.
A well-formed `cursor` is replaced by a `next_cursor` the API gave for that operation (or left out): the
document can say a cursor's form, not which cursors exist.

Nothing is excluded: destructive operations (delete the org or the account, leave, transfer ownership,
delete a provisioned resource) are fuzzed too; after one succeeds the tenant is provisioned again (a new
org, or a new owner when the account is gone), so later examples still act as a signed-in owner.

Examples per operation: `RAPTORFLOW_FUZZ_EXAMPLES` (8 by default, derandomized so CI is reproducible;
`make fuzz` runs 500 with a random seed). The coverage phase (every boundary and type case of the
document; 85% of the requests) runs once per default run: negative cases on SQLite, positive ones on
PostgreSQL (`_elsewhere`); `make fuzz` (more than 50 examples) runs everything on both backends.

Tolerated, narrowly (`filter_failure`): a schema-violating query accepted because query strings are text
read by their declared type, or a string accepted because it is stripped before its length is checked
(`_explained`); a sibling route answering an undeclared method (`_another_operation`); and a 422 for a
rule the document does not express, named by operation and field in `UNEXPRESSED` (each a finding for
src, listed in the README). Regression tests for what fuzzing found follow `test_api`.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter, HTTPAdapter
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData, UnsupportedMethodResponse
from urllib3 import HTTPHeaderDict, HTTPResponse

from raptorflow.app import create_app
from raptorflow.auth.deps import ORG_HEADER
from raptorflow.kit.pagination import CURSOR_PATTERN
from tests.conftest import (
    ADMIN_PG_URL,
    PASSWORD,
    Actor,
    _reachable,
    create_org,
    make_settings,
    sign_in,
    sign_up,
    truncate_all,
)

EXAMPLES = int(os.environ.get("RAPTORFLOW_FUZZ_EXAMPLES", "8"))
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
THOROUGH = EXAMPLES > 50  # `make fuzz`: a random seed, and every case on every backend
BASE_URL = "http://testserver"
ORGS = "/api/v1/organizations"
# The tenant's own requests come from another client address than the fuzzed ones, which fail sign-ins
# often enough to be throttled per address.
SETUP_CLIENT = ("10.9.8.7", 4000)


def _fresh_email() -> str:
    return f"fuzz-{uuid.uuid4().hex[:12]}@example.com"


# --- the principal ---------------------------------------------------------------------------------


@dataclass
class Tenant:
    """The signed-in org owner every fuzzed request acts as, and the ids of its org's resources."""

    http: httpx.AsyncClient
    owner: Actor | None = None
    member_email: str = ""
    org_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    # Ids of what fuzzed requests created in the org (from `Location`), by path parameter name.
    learned: dict[str, list[str]] = field(default_factory=dict)
    # `next_cursor` values the API answered, by operation (`GET /api/v1/indicators`).
    cursors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        assert self.owner is not None
        return self.owner.in_org(self.org_id)

    async def sign_up_owner(self) -> None:
        """A new owner (with a spare second session for `session_id`) and a new org."""
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
        await self.seed_intel()

    async def seed_intel(self) -> None:
        """Best effort (these routes are young): one intel object of each kind, a sighting of the indicator
        and a relationship, whose ids path parameters and bodies are then aimed at."""
        self.learned.clear()
        tag = uuid.uuid4().hex[:10]
        seeds = (
            ("project_id", "/api/v1/projects", {"name": f"fuzz {tag}"}),
            ("actor_id", "/api/v1/threat-actors", {"name": f"fuzz {tag}"}),
            ("campaign_id", "/api/v1/campaigns", {"name": f"fuzz {tag}"}),
            ("report_id", "/api/v1/reports", {"title": f"fuzz {tag}"}),
            ("indicator_id", "/api/v1/indicators", {"value": f"fuzz-{tag}.example.com"}),
            (
                "vulnerability_id",
                "/api/v1/vulnerabilities",
                {"cve_id": f"CVE-2024-{int(tag, 16) % 10**7:07d}"},
            ),
        )
        for name, path, body in seeds:
            await self._seed(name, path, body)
        indicator, vulnerability = self.learned.get("indicator_id"), self.learned.get("vulnerability_id")
        if indicator:
            self.learned["object_id"] = list(indicator)
            await self._seed("sighting_id", f"/api/v1/indicators/{indicator[0]}/sightings", {"where": "fuzz"})
        if indicator and vulnerability:
            link = {
                "source_id": indicator[0],
                "target_id": vulnerability[0],
                "relationship_type": "related-to",
            }
            await self._seed("relationship_id", "/api/v1/relationships", link)

    async def _seed(self, name: str, path: str, body: dict[str, Any]) -> None:
        response = await self.http.post(path, json=body, headers=self.headers)
        if response.status_code in (200, 201):
            self.learned.setdefault(name, []).append(response.json()["id"])

    async def recover(self) -> None:
        """Provision again after a destructive call succeeded: a new owner if the account is gone."""
        me = await self.http.get("/api/v1/users/me", headers=self.headers)
        if me.status_code == 401:
            await self.sign_up_owner()
        else:
            assert me.status_code == 200, me.text
            await self.create_org()

    def own_ids(self) -> dict[str, str]:
        latest = {name: values[-1] for name, values in self.learned.items() if values}
        return {**latest, "org_id": self.org_id, **self.ids}

    async def notice(self, case: Any, response: Any) -> None:
        """Keep track of what a fuzzed request did; provision again what it destroyed (the account, the
        org, the membership, a provisioned resource: everything; the last of a kind of intel: the seeds)."""
        if not 200 <= response.status_code < 300:
            return
        self.learn(response)
        self.learn_cursor(case, response)
        method, path = case.method.upper(), case.path
        if (
            path.endswith(("/leave", "/transfer-ownership"))
            or f"{method} {path}" == "DELETE /api/v1/users/me"
        ):
            await self.recover()
            return
        if method != "DELETE":
            return
        # What a DELETE on an item (a path ending with its id) removed; sub-resources are not followed.
        last = re.findall(r"\{([^/]+?)\}$", path)
        gone = {case.path_parameters[last[0]]} if last and case.path_parameters else set()
        if gone & ({self.org_id, *self.ids.values()} - {self.ids["session_id"]}):
            await self.recover()
            return
        emptied = False
        for values in self.learned.values():
            kept = [value for value in values if value not in gone]
            emptied = emptied or (values and not kept)
            values[:] = kept
        if emptied:
            await self.seed_intel()

    def learn_cursor(self, case: Any, response: Any) -> None:
        """Remember a list's `next_cursor`: the only cursors the API accepts are those it gave."""
        if "json" not in response.headers.get("content-type", ""):
            return
        try:
            body = response.json()
        except ValueError:
            return
        cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if isinstance(cursor, str) and cursor:
            kept = self.cursors.setdefault(case.operation.label, [])
            kept[:] = [*kept[-4:], cursor]

    def learn(self, response: Any) -> None:
        """Remember the ids in the `Location` of what a request created (`/api/v1/projects/{project_id}`)."""
        found = [value for name, value in response.headers.items() if name.lower() == "location"]
        if not 200 <= response.status_code < 300 or not found:
            return
        location = found[0][0] if isinstance(found[0], list) else found[0]
        path = urlsplit(location).path
        for pattern, _ in _TEMPLATES:
            match = pattern.fullmatch(path)
            if match:
                fixed = ("org_id", *self.ids)
                for name, value in match.groupdict().items():
                    if name not in fixed and _aimable(value):
                        self.learned.setdefault(name, []).append(value)


# --- transport: Schemathesis speaks `requests`; the app lives on pytest-asyncio's session loop -------


_DECODED_HEADERS = {"content-encoding", "content-length"}


class ASGIOnLoopAdapter(BaseAdapter):
    """A `requests` adapter handing each request to the app through httpx, on the session event loop.

    The app fixture, its engine and their pooled connections (asyncpg's are bound to a loop) belong to
    pytest-asyncio's session loop, which is idle while a sync test runs: each request runs to completion
    there. (Schemathesis' own ASGI transport would start another loop per request.)
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
            # httpx has already decoded a gzip body: its encoding and length no longer describe it.
            headers=HTTPHeaderDict(
                [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DECODED_HEADERS]
            ),
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
    sqlite: bool


# The generation hooks run inside Schemathesis; they aim at the tenant of the running test.
_current: list[FuzzEnv] = []


@pytest.fixture(scope="module")
async def fuzz_env(app: Any) -> AsyncIterator[FuzzEnv]:
    """The tenant on this backend's app (the session-scoped, parametrized `app` fixture), shared by the
    module's tests; tables and per-process state are reset afterwards, as the `client` fixture does."""
    fuzzed = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    own = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=SETUP_CLIENT)
    async with (
        httpx.AsyncClient(transport=fuzzed, base_url=BASE_URL) as http,
        httpx.AsyncClient(transport=own, base_url=BASE_URL) as setup_http,
    ):
        tenant = Tenant(setup_http)
        await tenant.sign_up_owner()
        session = requests.Session()
        session.trust_env = False  # no proxy or .netrc lookups per request
        session.mount("http://", ASGIOnLoopAdapter(asyncio.get_running_loop(), http))
        env = FuzzEnv(asyncio.get_running_loop(), session, tenant, app.state.settings.is_sqlite)
        _current.append(env)
        try:
            yield env
        finally:
            _current.remove(env)
            session.close()
    await truncate_all(app)
    await app.state.limiter.storage.reset()
    await app.state.token_issuer.reload(force=True)


# --- the document --------------------------------------------------------------------------------


def _served_document() -> dict[str, Any]:
    # The document depends on the code only: build it from an instance that never touches its database.
    return create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()


# The default run probes one undeclared method per path (all of them under `make fuzz`).
_CONFIG = {} if THOROUGH else {"phases": {"coverage": {"unexpected-methods": ["trace"]}}}
schema = schemathesis.openapi.from_dict(_served_document(), config=schemathesis.Config.from_dict(_CONFIG))


def _mostly(original: dict[str, Any], aimed: dict[str, Any]) -> Any:
    if not aimed:
        return st.just(original)
    return st.sampled_from([True, True, True, False]).map(
        lambda use: {**original, **aimed} if use else original
    )


# The canonical form `format: uuid` asks for: ids of negative cases (not UUIDs) are never replaced, so
# they stay negative.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _aimable(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def _aimed(values: dict[str, Any], own: dict[str, str]) -> dict[str, str]:
    return {name: own[name] for name, value in values.items() if name in own and _aimable(value)}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """In 3 fuzzed examples out of 4, path ids name the tenant's own org and resources."""
    if not path_parameters:
        return st.just(path_parameters)
    return _mostly(path_parameters, _aimed(path_parameters, _current[-1].tenant.own_ids()))


def _with_own_ids(value: Any, own: dict[str, str]) -> Any:
    """`value` with the ids it holds under a known name (`project_id`, `user_id`...) made the tenant's."""
    if isinstance(value, dict):
        return {
            name: own[name] if name in own and _aimable(item) else _with_own_ids(item, own)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_with_own_ids(item, own) for item in value]
    return value


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """In 3 fuzzed examples out of 4, ids in a body (`user_id`, `project_id`...) name the tenant's."""
    aimed = _with_own_ids(body, _current[-1].tenant.own_ids())
    if aimed == body:
        return st.just(body)
    return st.sampled_from([True, True, True, False]).map(lambda use: aimed if use else body)


_CURSOR_FORM = re.compile(CURSOR_PATTERN)


def _with_own_cursor(query: dict[str, Any], label: str, tenant: Tenant) -> dict[str, Any]:
    """`query` with a well-formed `cursor` replaced by one the API gave for this operation (or left out
    until it gave one): the document can say a cursor's form, not which cursors exist. A malformed one
    stays, to be refused."""
    cursor = query.get("cursor")
    if not isinstance(cursor, str) or not cursor or not _CURSOR_FORM.fullmatch(cursor):
        return query
    given = tenant.cursors.get(label)
    rest = {name: value for name, value in query.items() if name != "cursor"}
    return {**rest, "cursor": given[-1]} if given else rest


@schema.hook
def map_query(context: Any, query: dict[str, Any] | None) -> Any:
    """Cursors in fuzzed queries are ones the API gave (`_with_own_cursor`)."""
    if not query or context.operation is None:
        return query
    return _with_own_cursor(query, context.operation.label, _current[-1].tenant)


def _aim_explicit_case(case: Any, tenant: Tenant) -> None:
    """Examples and coverage cases are built at collection, before the tenant exists: aim their ids now
    (well-formed UUIDs only, so the malformed ids of negative cases stay as generated)."""
    if case.meta is None or case.meta.phase.name.value == "fuzzing":
        return
    own = tenant.own_ids()
    if case.query:
        case.query = _with_own_cursor(dict(case.query), case.operation.label, tenant)
    if case.path_parameters:
        case.path_parameters = {**case.path_parameters, **_aimed(case.path_parameters, own)}
    if isinstance(case.body, dict | list):
        case.body = _with_own_ids(case.body, own)


# --- failures explained by known src findings -----------------------------------------------------

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_TRUE_WORDS = {"1", "true", "yes", "on", "t", "y"}
_FALSE_WORDS = {"0", "false", "no", "off", "f", "n"}


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = schema.raw_schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _alternatives(node: Any) -> list[dict[str, Any]]:
    node = _resolve(node)
    if not isinstance(node, dict):
        return []
    if "anyOf" in node or "oneOf" in node:
        return [alt for sub in node.get("anyOf", node.get("oneOf")) for alt in _alternatives(sub)]
    return [node]


def _as_read(value: Any, node: Any, *, text: bool) -> Any:
    """`value` as the API reads it: strings stripped (accounts/schemas.py `Input` strips them before
    checking lengths); and, for query strings (`text`: every value arrives as text, read by its declared
    type), 0/1, "yes", "off"... as booleans and numeric strings as numbers. JSON bodies are read strictly."""
    if isinstance(value, str):
        value = value.strip()
    for alt in _alternatives(node):
        kind = alt.get("type")
        if text and kind == "boolean" and not isinstance(value, bool):
            word = str(int(value)) if isinstance(value, float) and value in (0, 1) else str(value).lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
        elif (
            text
            and kind in ("integer", "number")
            and (isinstance(value, bool) or (isinstance(value, str) and _NUMBER.fullmatch(value)))
        ):
            return float(value) if kind == "number" or "." in str(value) else int(value)
        elif kind == "object" and isinstance(value, dict):
            properties = alt.get("properties", {})
            return {name: _as_read(item, properties.get(name, {}), text=text) for name, item in value.items()}
        elif kind == "array" and isinstance(value, list):
            return [_as_read(item, alt.get("items", {}), text=text) for item in value]
    return value


_VALIDATORS: dict[str, Any] = {}


def _valid(key: str, node: dict[str, Any], instance: Any) -> bool:
    if key not in _VALIDATORS:
        root = {"components": schema.raw_schema.get("components", {}), "allOf": [node]}
        _VALIDATORS[key] = jsonschema_rs.validator_for(root, validate_formats=True)
    return bool(_VALIDATORS[key].is_valid(instance))


def _explained(case: Any) -> bool:
    """A negative request the API accepted that is valid once read as the API reads it (`_as_read`):
    query strings (text by nature, read by their declared type), or strings with surrounding blanks
    (" " + 200 characters passes `maxLength: 200`: what is stored is valid; a document cannot say
    "after stripping"). JSON bodies get no other allowance (`test_lax_types_are_refused`)."""
    meta = case.meta
    if meta is None:
        return False
    negative = {loc.value for loc, info in meta.components.items() if info.mode.value == "negative"}
    if not negative or negative - {"query", "body"}:
        return False
    label = case.operation.label
    operation = schema.raw_schema["paths"][case.operation.path][case.operation.method.lower()]
    if "query" in negative:
        declared = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        query_schema = {
            "type": "object",
            "properties": {p["name"]: p.get("schema", {}) for p in declared},
            "required": [p["name"] for p in declared if p.get("required")],
        }
        if not _valid(
            f"{label} query", query_schema, _as_read(dict(case.query or {}), query_schema, text=True)
        ):
            return False
    if "body" in negative:
        content = operation.get("requestBody", {}).get("content", {})
        if case.media_type != "application/json" or "application/json" not in content:
            return False
        body_schema = content["application/json"]["schema"]
        if not _valid(f"{label} body", body_schema, _as_read(case.body, body_schema, text=False)):
            return False
    return True


def _template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/]+?\})", path)
    return re.compile("".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts))


_TEMPLATES = [(_template(path), {m.upper() for m in ops}) for path, ops in schema.raw_schema["paths"].items()]


def _another_operation(method: str, url: str) -> bool:
    """Whether a documented operation answers `method` on `url` (a sibling template such as
    `/indicators/{indicator_id}` also matches `/indicators/search`)."""
    path = url.split("?", 1)[0].removeprefix(BASE_URL)
    return any(pattern.fullmatch(path) and method in methods for pattern, methods in _TEMPLATES)


# Rules the document does not express, by operation and the field a 422 names: a schema-valid request
# refused by one of them is not counted. Each is a finding for src (say it in the document, or stop
# refusing), listed in the README; nothing else of the operation is exempt.
_PERIOD = "last_seen must not be before first_seen (one field against another)"
_TYPES = "an indicator type name or alias (the registry's names, any case)"
_CVSS = "the CVSS vector grammar (the cvss library)"
UNEXPRESSED: dict[str, dict[str, str]] = {
    "POST /api/v1/auth/register": {
        "email": "email-validator's deliverability rules (special-use domains)",
        "password": "the password policy beyond length (not the email or its user name)",
    },
    "POST /api/v1/auth/token": {"request": "NUL in the sign-in form reaches the database (FastAPI's form)"},
    "POST /api/v1/users/me/password": {
        "current_password": "a wrong current password is a 422",
        "new_password": "the password policy beyond length",
    },
    "POST /api/v1/organizations/{org_id}/api-keys": {
        "allowed_ips": "IP address / CIDR syntax",
        "expires_at": "must be in the future",
    },
    "GET /api/v1/threat-actors": {"country": "ISO 3166-1 alpha-2 codes or country names"},
    "POST /api/v1/threat-actors": {"country": "ISO 3166-1", "last_seen": _PERIOD},
    "PATCH /api/v1/threat-actors/{actor_id}": {"country": "ISO 3166-1", "last_seen": _PERIOD},
    "POST /api/v1/campaigns": {"last_seen": _PERIOD},
    "PATCH /api/v1/campaigns/{campaign_id}": {"last_seen": _PERIOD},
    "POST /api/v1/vulnerabilities": {"cvss_v3_vector": _CVSS, "cvss_v4_vector": _CVSS},
    "PATCH /api/v1/vulnerabilities/{vulnerability_id}": {"cvss_v3_vector": _CVSS, "cvss_v4_vector": _CVSS},
    "POST /api/v1/indicators": {
        "value": "the type is detected from the value: not every text is an indicator",
        "type": _TYPES,
    },
    "PATCH /api/v1/indicators/{indicator_id}": {
        "valid_until": "after valid_from (one field against another)"
    },
    "POST /api/v1/indicators/{indicator_id}/sightings": {
        "first_seen": "not in the future",
        "last_seen": "not in the future, not before first_seen",
    },
    "PATCH /api/v1/indicators/bulk": {
        "filter": "at least one condition with a value",
        "set": "at least one field with a value",
    },
    "PUT /api/v1/indicators/scoring": {"half_life_days": "keys are indicator types"},
    "GET /api/v1/projects/{project_id}/objects": {"kind": "an object kind"},
    "POST /api/v1/taxii-collections": {"filter": _TYPES},
    "PATCH /api/v1/taxii-collections/{collection_id}": {"filter": _TYPES},
    "POST /api/v1/imports": {
        "file": "the file (or JSON content) is not empty",
        "format": "left out, it is guessed from the content, which may not tell",
        "type": _TYPES,
        "preset": "a preset is a CSV layout: format csv or left out",
        "csv": "a column mapping and a preset exclude each other",
    },
    "POST /api/v1/extract": {"file": "the file is not empty"},
    "POST /api/v1/feeds": {"type": _TYPES, "url": "an http(s) URL whose host is not a private address"},
    "PATCH /api/v1/feeds/{feed_id}": {
        "type": _TYPES,
        "url": "an http(s) URL whose host is not a private address",
    },
    "POST /api/v1/webhooks": {"url": "an http(s) URL"},
    "PATCH /api/v1/webhooks/{webhook_id}": {"url": "an http(s) URL"},
}


def _refused_for_unexpressed_rule(case: Any, response: Any) -> bool:
    known = UNEXPRESSED.get(case.operation.label)
    if not known or response.status_code != 422:
        return False
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    fields = {str(error.get("field", "")).removeprefix("body.").split(".")[0] for error in errors}
    return bool(fields) and fields <= set(known)


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Drop what is not a failure of the API under test, or is a src finding named in `UNEXPRESSED`."""
    if isinstance(failure, RejectedPositiveData) and _refused_for_unexpressed_rule(case, response):
        return False
    if isinstance(failure, AcceptedNegativeData) and _explained(case):
        return False
    if isinstance(failure, UnsupportedMethodResponse):
        # The "undeclared" method is declared by another operation whose path template matches too.
        request = response.request
        return not _another_operation(str(request.method), str(request.url))
    return True


POSTGRES_UP = _reachable(ADMIN_PG_URL, 5432)


def _elsewhere(case: Any, sqlite: bool) -> bool:
    """Whether the default run sends this coverage case on the other backend only.

    Negative cases and undeclared-method probes (validation and routing) go to SQLite; positive ones,
    which store boundary values, to PostgreSQL, the stricter database (or to SQLite when it is down).
    Fuzzed examples run on both; `make fuzz` runs everything on both.
    """
    meta = case.meta
    if THOROUGH or meta is None or meta.phase.name.value != "coverage":
        return False
    negative = meta.generation.mode.value == "negative"
    return (not negative and POSTGRES_UP) if sqlite else negative


def _negative_in(case: Any, location: str) -> bool:
    meta = case.meta
    if meta is None:
        return False
    return any(
        loc.value == location and info.mode.value == "negative" for loc, info in meta.components.items()
    )


def _headers_for(case: Any, tenant: Tenant) -> dict[str, str]:
    """The owner's credentials; the org header too unless the case sends its own, which is aimed at the
    tenant's org when it is a well-formed id (a malformed one stays: it must be refused)."""
    headers = tenant.headers
    generated = {name.lower(): name for name in case.headers or {}}
    if ORG_HEADER not in generated:
        return headers
    name = generated[ORG_HEADER]
    meant_wrong = _negative_in(case, "header") and case.meta.generation.mode.value == "negative"
    if _aimable(case.headers[name]) or not meant_wrong:
        # Schemathesis' "default positive" coverage case can carry a header it marks negative (`0`)
        # while checking the answer as a valid request's: only a case meant wrong keeps a malformed one.
        case.headers[name] = tenant.org_id
    return {key: value for key, value in headers.items() if key.lower() != ORG_HEADER}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not THOROUGH,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, fuzz_env: FuzzEnv) -> None:
    if _elsewhere(case, fuzz_env.sqlite):
        return
    tenant = fuzz_env.tenant
    _aim_explicit_case(case, tenant)
    headers = _headers_for(case, tenant)
    response = case.call(base_url=BASE_URL, session=fuzz_env.session, headers=headers)
    fuzz_env.loop.run_until_complete(tenant.notice(case, response))
    case.validate_response(
        response,
        headers=headers,
        transport_kwargs={"base_url": BASE_URL, "session": fuzz_env.session, "headers": headers},
    )


# --- what the fuzzer found, kept fixed -----------------------------------------------------------------


async def test_405_allow_lists_every_method() -> None:
    application = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    wrong = []
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        for path, operations in _served_document()["paths"].items():
            url = re.sub(r"\{[^/]+?\}", str(uuid.uuid4()), path)
            response = await http.request("TRACE", url)  # no route answers TRACE
            allowed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
            documented = {method.upper() for method in operations}
            if response.status_code != 405 or allowed - {"HEAD"} != documented:
                got = f"{response.status_code}, Allow {sorted(allowed)}"
                wrong.append(f"{path}: {got}, documented {sorted(documented)}")
    await application.state.engine.dispose()
    assert wrong == [], "\n".join(wrong)


async def test_lax_types_are_refused(fuzz_env: FuzzEnv) -> None:
    """JSON bodies are strict: each value has another JSON type than documented (query strings are text and
    are read by their declared type instead)."""
    tenant = fuzz_env.tenant
    accepted = []
    for method, path, body in (
        ("POST", "/api/v1/lookup", {"values": ["203.0.113.9"], "include_expired": 0}),
        ("POST", "/api/v1/indicators", {"value": f"lax-{uuid.uuid4().hex[:8]}.example.com", "score": "50"}),
        (
            "POST",
            "/api/v1/indicators",
            {"value": f"lax-{uuid.uuid4().hex[:8]}.example.com", "confidence": True},
        ),
        ("PATCH", "/api/v1/indicators/bulk", {"filter": {"archived": 0}, "set": {"archived": True}}),
        ("PATCH", "/api/v1/indicators/bulk", {"filter": {"tag": "x"}, "set": {"archived": 1}}),
        (
            "POST",
            "/api/v1/feeds",
            {
                "name": "lax",
                "kind": "csv",
                "url": "https://example.com/x.csv",
                "csv": {"value_column": False},
            },
        ),
    ):
        response = await tenant.http.request(method, path, json=body, headers=tenant.headers)
        if response.status_code != 422:
            accepted.append(f"{method} {path} {body}: {response.status_code}")
    assert accepted == [], "\n".join(accepted)


async def test_report_dates_are_rfc3339_only(fuzz_env: FuzzEnv) -> None:
    tenant = fuzz_env.tenant
    accepted = []
    for query in ("published_before=0.5", "published_after=1700000000"):
        response = await tenant.http.get(f"/api/v1/reports?{query}", headers=tenant.headers)
        if response.status_code != 422:
            accepted.append(f"GET /api/v1/reports?{query}: {response.status_code}")
    assert accepted == [], "\n".join(accepted)


async def test_nul_characters_are_refused(fuzz_env: FuzzEnv) -> None:
    tenant = fuzz_env.tenant
    http, headers, org = tenant.http, tenant.headers, f"{ORGS}/{tenant.org_id}"
    responses = {
        "GET /indicators/search?q": await http.get("/api/v1/indicators/search?q=a%00b", headers=headers),
        "PATCH /users/me": await http.patch("/api/v1/users/me", json={"name": "a\x00b"}, headers=headers),
        "POST workspaces": await http.post(f"{org}/workspaces", json={"name": "a\x00b"}, headers=headers),
        "GET audit-log?action": await http.get(f"{org}/audit-log?action=a%00b", headers=headers),
        "POST /auth/token": await http.post(
            "/api/v1/auth/token", data={"username": "a\x00b@example.com", "password": "x\x00y"}
        ),
    }
    failed = [f"{name}: {r.status_code}" for name, r in responses.items() if r.status_code >= 500]
    assert failed == [], "\n".join(failed)


async def test_nul_inside_stored_json_is_refused(fuzz_env: FuzzEnv) -> None:
    """A NUL in a value kept as JSON (jsonb on PostgreSQL: SQLSTATE 22P05) is the client's: 422."""
    tenant = fuzz_env.tenant
    body = {"format": "text", "content": "203.0.113.80\n", "source": "a\x00b"}
    response = await tenant.http.post("/api/v1/imports", json=body, headers=tenant.headers)
    assert response.status_code in (202, 422), response.text
    if response.status_code == 422:
        assert response.headers["content-type"] == "application/problem+json"
        assert "NUL" in response.json()["detail"]


async def test_405_on_a_path_beside_an_id_route(fuzz_env: FuzzEnv) -> None:
    """`/indicators/bulk` and `/indicators/scoring` are not ids: a missing method is a 405 naming theirs."""
    tenant = fuzz_env.tenant
    for method, path, allowed in (
        ("GET", "/api/v1/indicators/bulk", "PATCH, POST"),
        ("PATCH", "/api/v1/indicators/scoring", "GET, PUT"),
    ):
        response = await tenant.http.request(method, path, json={}, headers=tenant.headers)
        assert (response.status_code, response.headers.get("allow")) == (405, allowed), response.text
    # A path segment that is not an id names nothing.
    response = await tenant.http.get("/api/v1/indicators/not-an-id", headers=tenant.headers)
    assert response.status_code == 404, response.text


async def test_bad_taxii_added_after_is_a_400_taxii_error(fuzz_env: FuzzEnv) -> None:
    tenant = fuzz_env.tenant
    made = await tenant.http.post(
        "/api/v1/taxii-collections", json={"title": f"fuzz {uuid.uuid4().hex[:8]}"}, headers=tenant.headers
    )
    assert made.status_code == 201, made.text
    url = made.json()["url"].split("://", 1)[-1].split("/", 1)[1]
    for value in ("yesterday", "2026-01-01T00:00:00"):  # not a timestamp; no timezone
        response = await tenant.http.get(f"/{url}objects/?added_after={value}", headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == TAXII_MEDIA_TYPE
        assert response.json()["http_status"] == "400" and "added_after" in response.json()["description"]


async def test_unknown_project_is_a_404_naming_the_field(fuzz_env: FuzzEnv) -> None:
    """An id in a body that names nothing in the org answers like an id in the path: 404."""
    tenant = fuzz_env.tenant
    body = {"format": "text", "content": "203.0.113.81\n", "project_id": str(uuid.uuid4())}
    response = await tenant.http.post("/api/v1/imports", json=body, headers=tenant.headers)
    assert response.status_code == 404, response.text
    assert response.json()["errors"] == [
        {"field": "project_id", "message": "no such project in this organization"}
    ]


async def test_sort_takes_exactly_its_documented_grammar(fuzz_env: FuzzEnv) -> None:
    """`sort` is 1-3 listed fields, `-` for descending, no blanks; a field named again is ignored."""
    tenant = fuzz_env.tenant
    answers = {}
    for sort in ("-last_seen,score", "score,-score", "score, value", "+score", "", "a,b,c,d"):
        response = await tenant.http.get("/api/v1/indicators", params={"sort": sort}, headers=tenant.headers)
        answers[sort] = response.status_code
    assert answers == {
        "-last_seen,score": 200,
        "score,-score": 200,
        "score, value": 422,
        "+score": 422,
        "": 422,
        "a,b,c,d": 422,
    }
