"""Tenant isolation, generated from the OpenAPI document: another org's ids answer exactly like random ids.

Org A and org B have different owners. Every object that has an id in some path is created in B;
then every method of every path with a path parameter is called from A (as A's owner, then with an
API key of A) with B's ids and with random UUIDs: both must answer 404 with the same body, and B's
rows must be unchanged. On PostgreSQL, a last test shows the database's own wall (row-level security).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.auth.deps import AUTHENTICATED
from raptorflow.kit.tenancy import ORG_SETTING
from raptorflow.models import Base
from tests.conftest import Actor, add_member, create_org, sign_up
from tests.test_rbac import (
    HTTP_METHODS,
    PATH_PARAM,
    SAFE_METHODS,
    declaration_of,
    fill_path,
    request_body,
)

ORGS = "/api/v1/organizations"
# Each path parameter and the object of org B (or of B's people) it takes. A parameter missing here
# fails the tests, naming its path: create such an object in `build_world` and add it.
PARAM_KINDS = {
    "org_id": "org B itself",
    "workspace_id": "a workspace of B",
    "key_id": "an API key of B",
    "invitation_id": "an invitation of B",
    "user_id": "a member of B who is not in A",
    "session_id": "a sign-in session of B's owner",
}
TENANT_TABLES = ("memberships", "workspaces", "api_keys", "invitations")


@dataclass
class World:
    """Two orgs with different owners; B holds one object of every kind a path can name."""

    owner_a: Actor
    owner_b: Actor
    member_b: Actor
    org_a: str
    org_b: str
    key_a: str
    b_ids: dict[str, str]

    @property
    def b_user_ids(self) -> list[str]:
        """The people of org B."""
        return [self.owner_b.user_id, self.member_b.user_id]


async def _created(response: Any) -> dict[str, Any]:
    result = await response
    assert result.status_code == 201, result.text
    return dict(result.json())


async def _fill_org(client: httpx.AsyncClient, owner: Actor, org_id: str, tag: str) -> dict[str, str]:
    """A workspace, an API key (role owner) and an invitation in an org; returns their ids and the secret."""
    base = f"{ORGS}/{org_id}"
    workspace = await _created(client.post(f"{base}/workspaces", json={"name": f"ws-{tag}"}, headers=owner.headers))
    key = await _created(
        client.post(f"{base}/api-keys", json={"name": f"key-{tag}", "role": "owner"}, headers=owner.headers)
    )
    invited = await _created(
        client.post(f"{base}/members", json={"email": f"invitee-{tag}@example.com"}, headers=owner.headers)
    )
    assert invited["status"] == "invited", invited
    return {
        "workspace_id": workspace["id"],
        "key_id": key["id"],
        "secret": key["secret"],
        "invitation_id": invited["invitation"]["id"],
    }


async def build_world(client: httpx.AsyncClient) -> World:
    """Orgs A and B, each with a workspace, an API key and an invitation; B also has a second member."""
    owner_a = await sign_up(client, "owner-a@example.com")
    owner_b = await sign_up(client, "owner-b@example.com")
    member_b = await sign_up(client, "member-b@example.com")
    org_a = await create_org(owner_a, "tenant-a")
    org_b = await create_org(owner_b, "tenant-b")
    await add_member(owner_b, org_b, member_b, "editor")
    a_objects = await _fill_org(client, owner_a, org_a, "a")
    b_objects = await _fill_org(client, owner_b, org_b, "b")
    sessions = await client.get("/api/v1/users/me/sessions", headers=owner_b.headers)
    assert sessions.status_code == 200, sessions.text
    current = [s["id"] for s in sessions.json()["items"] if s["current"]]
    assert len(current) == 1, sessions.text
    b_ids = {
        "org_id": org_b,
        "workspace_id": b_objects["workspace_id"],
        "key_id": b_objects["key_id"],
        "invitation_id": b_objects["invitation_id"],
        "user_id": member_b.user_id,
        "session_id": current[0],
    }
    assert set(b_ids) == set(PARAM_KINDS)
    return World(owner_a, owner_b, member_b, org_a, org_b, a_objects["secret"], b_ids)


def parameterized_operations(app: Any) -> list[tuple[str, str, list[str]]]:
    """(METHOD, path, path parameters) of every operation whose path has a parameter.

    Fails, naming the paths, when a parameter is of a kind these tests do not know.
    """
    spec = app.openapi()
    out = []
    unknown = []
    for path, item in spec["paths"].items():
        params = PATH_PARAM.findall(path)
        if not params:
            continue
        unknown += [f"{path}: {{{p}}}" for p in params if p not in PARAM_KINDS]
        out += [(method.upper(), path, params) for method in item if method in HTTP_METHODS]
    if unknown:
        pytest.fail(
            "Path parameters of an unknown kind (create such an object in org B in build_world() and "
            "map it in PARAM_KINDS of tests/test_isolation.py):\n" + "\n".join(unknown)
        )
    assert out, "no path has a parameter: the OpenAPI document is not what these tests expect"
    return sorted(out, key=lambda op: (op[1], op[0]))


def comparable(response: httpx.Response) -> Any:
    """The response body without its request id (JSON), or its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        body.pop("request_id", None)
    return body


async def snapshot(app: Any, world: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of org B and of B's people, read through the table owner (no RLS) from the database.

    Generic over the schema: every table with an `org_id` column, the org row, and the rows of B's users.
    """
    org_b = uuid.UUID(world.org_b)
    people = [uuid.UUID(u) for u in world.b_user_ids]
    engine = create_async_engine(app.state.settings.database_url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                columns = table.c
                if "org_id" in columns:
                    stmt = select(table).where(columns.org_id == org_b)
                elif table.name == "organizations":
                    stmt = select(table).where(columns.id == org_b)
                elif table.name == "users":
                    stmt = select(table).where(columns.id.in_(people))
                elif "user_id" in columns:
                    stmt = select(table).where(columns.user_id.in_(people))
                else:
                    continue
                rows = await conn.execute(stmt.order_by(*table.primary_key.columns))
                out[table.name] = [tuple(row) for row in rows]
    finally:
        await engine.dispose()
    for table_name in ("organizations", *TENANT_TABLES, "audit_log", "auth_sessions"):
        assert out.get(table_name), f"org B has no {table_name} rows: the snapshot proves nothing"
    return out


async def readable_by_b(client: httpx.AsyncClient, app: Any, world: World) -> None:
    """B's owner reads every parameterized GET with B's ids: the URLs and ids the tests build are real."""
    spec = app.openapi()
    for method, path, _params in parameterized_operations(app):
        if method not in SAFE_METHODS:
            continue
        url = fill_path(path, world.b_ids, "org B")
        body = request_body(spec, method, path, world.b_ids)
        response = await client.request(
            method, url, json=body, headers=world.owner_b.in_org(world.org_b)
        )
        assert 200 <= response.status_code < 300, f"{method} {url} as B's owner: {response.text}"


def variants(path: str, params: list[str], world: World, *, own_org: str | None) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(name, B's ids, random ids) to try on a path.

    "B's ids": every parameter is B's object. With `own_org` and other parameters besides org_id:
    also the caller's own org with B's objects inside it (the repositories must scope by org too).
    """
    randoms = {p: str(uuid.uuid4()) for p in params}
    out = [("B's ids", {p: world.b_ids[p] for p in params}, randoms)]
    if own_org is not None and "org_id" in params and len(params) > 1:
        out.append(
            (
                "own org, B's objects",
                {**{p: world.b_ids[p] for p in params}, "org_id": own_org},
                {**randoms, "org_id": own_org},
            )
        )
    return out


async def probe_all(
    client: httpx.AsyncClient,
    app: Any,
    world: World,
    headers: dict[str, str],
    *,
    own_org: str | None,
    expected: Any,
) -> list[str]:
    """Call every parameterized operation with B's ids and with random ids; return the violations.

    `expected(method, path)` is the status both must answer.
    """
    spec = app.openapi()
    failures = []
    for method, path, params in parameterized_operations(app):
        want = expected(method, path)
        for name, foreign_ids, random_ids in variants(path, params, world, own_org=own_org):
            body = request_body(spec, method, path, world.b_ids)
            foreign = await client.request(method, fill_path(path, foreign_ids, "org B"), json=body, headers=headers)
            random = await client.request(method, fill_path(path, random_ids, "random"), json=body, headers=headers)
            label = f"{method} {path} ({name})"
            if foreign.status_code != want:
                failures.append(f"{label}: B's ids gave {foreign.status_code}, not {want}: {foreign.text[:300]}")
            if random.status_code != want:
                failures.append(f"{label}: random ids gave {random.status_code}, not {want}: {random.text[:300]}")
            if comparable(foreign) != comparable(random):
                failures.append(
                    f"{label}: B's ids and random ids answer differently:\n"
                    f"    B's ids: {foreign.text[:300]}\n    random:  {random.text[:300]}"
                )
    return failures


async def test_owner_of_another_org_gets_404_like_a_random_id_everywhere(
    client: httpx.AsyncClient, app: Any
) -> None:
    """A's owner (token + X-Organization-ID: A) meets B's objects as 404s identical to random ids'."""
    world = await build_world(client)
    await readable_by_b(client, app, world)
    before = await snapshot(app, world)
    failures = await probe_all(
        client,
        app,
        world,
        world.owner_a.in_org(world.org_a),
        own_org=world.org_a,
        expected=lambda method, path: 404,
    )
    assert not failures, "Cross-tenant answers that differ from a random id's 404:\n" + "\n".join(failures)
    assert await snapshot(app, world) == before, "org B's rows changed while A probed them"


async def test_api_key_of_another_org_gets_404_like_a_random_id_everywhere(
    client: httpx.AsyncClient, app: Any
) -> None:
    """An API key of A (role owner, no X-Organization-ID) meets B's objects as 404s like random ids'.

    Routes only for signed-in users refuse keys with 403 whatever the ids; the answer is still the
    same for B's ids and random ones.
    """
    world = await build_world(client)
    await readable_by_b(client, app, world)
    before = await snapshot(app, world)

    def expected(method: str, path: str) -> int:
        return 403 if declaration_of(app, method, path) == {AUTHENTICATED} else 404

    failures = await probe_all(
        client,
        app,
        world,
        {"Authorization": f"Bearer {world.key_a}"},
        own_org=world.org_a,
        expected=expected,
    )
    assert not failures, "Cross-tenant answers to an API key that differ from a random id's:\n" + "\n".join(
        failures
    )
    assert await snapshot(app, world) == before, "org B's rows changed while A's key probed them"


@pytest.mark.postgres
async def test_row_level_security_confines_the_app_role_to_the_bound_org(
    client: httpx.AsyncClient, app: Any
) -> None:
    """Without any WHERE clause, the app's role sees and writes only the org bound to the transaction."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature; SQLite has none")
    world = await build_world(client)
    org_a, org_b = world.org_a, world.org_b
    tables = (*TENANT_TABLES, "audit_log")

    # The table owner (RLS does not apply to it) sees both orgs in every table, and every table with
    # an org_id column has row-level security switched on.
    owner_engine = create_async_engine(app.state.settings.database_url)
    try:
        async with owner_engine.connect() as conn:
            for table in tables:
                orgs = {str(r[0]) for r in await conn.execute(text(f"SELECT org_id FROM {table}"))}
                assert {org_a, org_b} <= orgs, f"{table}: both orgs need rows for this test ({orgs})"
            unprotected = (
                await conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped "
                        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
                        "AND (NOT c.relrowsecurity OR NOT EXISTS "
                        "(SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))"
                    )
                )
            ).scalars().all()
            assert not unprotected, f"tables with org_id but no row-level security policy: {unprotected}"
    finally:
        await owner_engine.dispose()

    engine = app.state.engine
    async with engine.connect() as conn:
        who = (
            await conn.execute(
                text("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
        assert tuple(who) == ("raptorflow_app", False, False), who
        await conn.rollback()

        bound = await conn.begin()
        try:
            await conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": ORG_SETTING, "v": org_a})
            for table in tables:
                seen = {str(r[0]) for r in await conn.execute(text(f"SELECT org_id FROM {table}"))}
                assert seen == {org_a}, f"{table} bound to A shows {seen}"
            updated = await conn.execute(
                text("UPDATE workspaces SET description = 'hijacked' WHERE org_id = :b"), {"b": uuid.UUID(org_b)}
            )
            assert updated.rowcount == 0, "bound to A, an UPDATE reached B's workspaces"
            deleted = await conn.execute(text("DELETE FROM api_keys WHERE org_id = :b"), {"b": uuid.UUID(org_b)})
            assert deleted.rowcount == 0, "bound to A, a DELETE reached B's API keys"
        finally:
            await bound.rollback()

        unbound = await conn.begin()
        try:
            for table in tables:
                seen = {str(r[0]) for r in await conn.execute(text(f"SELECT org_id FROM {table}"))}
                assert not seen, f"{table} with no org bound shows {seen}"
        finally:
            await unbound.rollback()

        insert = await conn.begin()
        try:
            await conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": ORG_SETTING, "v": org_a})
            with pytest.raises(DBAPIError, match="row-level security"):
                await conn.execute(
                    text(
                        "INSERT INTO workspaces (id, org_id, name, description, created_at, updated_at) "
                        "VALUES (:id, :org, 'planted', '', now(), now())"
                    ),
                    {"id": uuid.uuid4(), "org": uuid.UUID(org_b)},
                )
        finally:
            await insert.rollback()
