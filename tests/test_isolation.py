"""Tenant isolation, generated from the OpenAPI document: another org's ids answer exactly like random ids.

Org A and org B have different owners. One object of every kind that has an id in some path is made
in B (by the factory of tests/test_rbac.py); then every method of every path with a path parameter is
called from A, as A's owner (Bearer + X-Organization-ID: A) and with an API key of A, with B's ids and
with random UUIDs in the same places (all of them, then A's own org with B's objects inside it). Both
must answer 404 with the same body (request_id aside), and B's rows in the database must not change.
Routes that take their org from X-Organization-ID are also called naming org B versus a random org.
On PostgreSQL, a last test shows the database's own wall: row-level security on `org_id`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
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
from tests.conftest import Actor, create_org, sign_up
from tests.test_rbac import (
    CORE_MAKERS,
    HTTP_METHODS,
    PATH_PARAM,
    SAFE_METHODS,
    SHARED_PARAMS,
    UNKNOWN_KIND_HELP,
    api_routes,
    declaration_of,
    fill_path,
    make_objects,
    references,
    request_inputs,
    route_permission,
    unknown_params,
)

ORGS = "/api/v1/organizations"
# Path parameters filled for B beyond the org's objects: B's org, B's member (a user not in A), and a
# sign-in session of B's owner. Every other kind is made in B by `make_objects` (tests/test_rbac.py).
SESSION_PARAM = "session_id"
TENANT_TABLES = ("memberships", "workspaces", "api_keys", "invitations")
ORG_ID_TABLES = (
    "SELECT c.relname FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
)


@dataclass
class World:
    """Two orgs with different owners; B holds one object of every kind a path can name."""

    owner_a: Actor
    owner_b: Actor
    org_a: str
    org_b: str
    key_a: str
    b_ids: dict[str, str]

    @property
    def b_user_ids(self) -> list[str]:
        """The people of org B."""
        return [self.owner_b.user_id]


def parameterized_operations(app: Any) -> list[tuple[str, str, list[str]]]:
    """(METHOD, path, path parameters) of every operation whose path has a parameter.

    Paths whose parameters all name reference data no org owns (ATT&CK) are left out. Fails, naming
    the paths, when a parameter is of a kind the fixtures cannot make.
    """
    spec = app.openapi()
    paths = [
        path
        for path in spec["paths"]
        if PATH_PARAM.findall(path) and not all(p in SHARED_PARAMS for p in PATH_PARAM.findall(path))
    ]
    unknown = unknown_params(spec, paths, SESSION_PARAM)
    if unknown:
        pytest.fail(UNKNOWN_KIND_HELP + "\n".join(unknown))
    out = [
        (method.upper(), path, PATH_PARAM.findall(path))
        for path in paths
        for method in spec["paths"][path]
        if method in HTTP_METHODS
    ]
    assert out, "no path has a parameter: the OpenAPI document is not what these tests expect"
    return sorted(out, key=lambda op: (op[1], op[0]))


async def build_world(client: httpx.AsyncClient, app: Any) -> World:
    """Orgs A and B with different owners; B holds one object of every kind any path names.

    Both orgs also get a workspace, an API key and an invitation (the row-level-security test reads
    them); A gets an owner-role API key for the key variant.
    """
    spec = app.openapi()
    owner_a = await sign_up(client, "owner-a@example.com")
    owner_b = await sign_up(client, "owner-b@example.com")
    org_a = await create_org(owner_a, "tenant-a")
    org_b = await create_org(owner_b, "tenant-b")
    sessions = await client.get("/api/v1/users/me/sessions", headers=owner_b.headers)
    assert sessions.status_code == 200, sessions.text
    current = [s["id"] for s in sessions.json()["items"] if s["current"]]
    assert len(current) == 1, sessions.text
    # `user_id`: B's owner, a member of B and a user who is not in A (a second account would cost a
    # sign-up, i.e. two argon2 runs, per test).
    b_ids = {"org_id": org_b, "user_id": owner_b.user_id, SESSION_PARAM: current[0], **SHARED_PARAMS}
    kinds = set(CORE_MAKERS)
    for method, path in [(m, p) for m, p, _params in parameterized_operations(app)] + header_operations(app):
        kinds |= references(spec, method, path)
    await make_objects(client, app, b_ids, kinds, lambda role: owner_b)
    a_ids = {"org_id": org_a, "user_id": owner_a.user_id}
    await make_objects(client, app, a_ids, CORE_MAKERS, lambda role: owner_a)
    key = await client.post(
        f"{ORGS}/{org_a}/api-keys", json={"name": "a-owner", "role": "owner"}, headers=owner_a.headers
    )
    assert key.status_code == 201, key.text
    return World(owner_a, owner_b, org_a, org_b, key.json()["secret"], b_ids)


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
        query, body = request_inputs(spec, method, path, world.b_ids)
        response = await client.request(
            method, url, params=query, json=body, headers=world.owner_b.in_org(world.org_b)
        )
        assert 200 <= response.status_code < 300, f"{method} {url} as B's owner: {response.text}"


def variants(
    path: str, params: list[str], world: World, *, own_org: str | None
) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(name, B's ids, random ids) to try on a path.

    "B's ids": every parameter is B's object. With `own_org` and other parameters besides org_id:
    also the caller's own org with B's objects inside it (the repositories must scope by org too).
    """
    randoms = {p: SHARED_PARAMS.get(p) or str(uuid.uuid4()) for p in params}
    foreign = {p: SHARED_PARAMS.get(p) or world.b_ids[p] for p in params}
    out = [("B's ids", foreign, randoms)]
    if own_org is not None and "org_id" in params and len(params) > 1:
        out.append(
            (
                "own org, B's objects",
                {**foreign, "org_id": own_org},
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
    expected: Callable[[str, str], int],
) -> list[str]:
    """Call every parameterized operation with B's ids and with random ids; return the violations.

    `expected(method, path)` is the status both must answer.
    """
    spec = app.openapi()
    failures = []
    for method, path, params in parameterized_operations(app):
        want = expected(method, path)
        for name, foreign_ids, random_ids in variants(path, params, world, own_org=own_org):
            query, body = request_inputs(spec, method, path, world.b_ids)
            foreign = await client.request(
                method, fill_path(path, foreign_ids, "org B"), params=query, json=body, headers=headers
            )
            random = await client.request(
                method, fill_path(path, random_ids, "random"), params=query, json=body, headers=headers
            )
            label = f"{method} {path} ({name})"
            if foreign.status_code != want:
                failures.append(
                    f"{label}: B's ids gave {foreign.status_code}, not {want}: {foreign.text[:300]}"
                )
            if random.status_code != want:
                failures.append(
                    f"{label}: random ids gave {random.status_code}, not {want}: {random.text[:300]}"
                )
            if comparable(foreign) != comparable(random):
                failures.append(
                    f"{label}: B's ids and random ids answer differently:\n"
                    f"    B's ids: {foreign.text[:300]}\n    random:  {random.text[:300]}"
                )
    return failures


def header_operations(app: Any) -> list[tuple[str, str]]:
    """(METHOD, path) of org-scoped routes that take their org from X-Organization-ID, not the path.

    Paths whose parameters all name reference data no org owns (ATT&CK) are left out.
    """
    out = []
    for route in api_routes(app):
        params = PATH_PARAM.findall(route.path_format)
        if route_permission(route) is None or "org_id" in params:
            continue
        if params and all(p in SHARED_PARAMS for p in params):
            continue
        out += [(method, route.path_format) for method in sorted(route.methods)]
    return sorted(out, key=lambda op: (op[1], op[0]))


async def probe_org_header(client: httpx.AsyncClient, app: Any, world: World) -> list[str]:
    """Routes taking their org from X-Organization-ID: naming org B answers like naming a random org.

    A's owner sends B's org (and B's ids) or a random org (and random ids): both 404, same body.
    """
    spec = app.openapi()
    operations = header_operations(app)
    unknown = unknown_params(spec, {path for _m, path in operations}, SESSION_PARAM)
    if unknown:
        pytest.fail(UNKNOWN_KIND_HELP + "\n".join(unknown))
    failures = []
    for method, path in operations:
        params = PATH_PARAM.findall(path)
        query, body = request_inputs(spec, method, path, world.b_ids)
        randoms = {p: SHARED_PARAMS.get(p) or str(uuid.uuid4()) for p in params}
        foreign = await client.request(
            method,
            fill_path(path, world.b_ids, "org B"),
            params=query,
            json=body,
            headers=world.owner_a.in_org(world.org_b),
        )
        random = await client.request(
            method,
            fill_path(path, randoms, "random"),
            params=query,
            json=body,
            headers=world.owner_a.in_org(str(uuid.uuid4())),
        )
        label = f"{method} {path} (X-Organization-ID of B)"
        if foreign.status_code != 404 or random.status_code != 404:
            failures.append(
                f"{label}: gave {foreign.status_code} / random org {random.status_code}, not 404: "
                f"{foreign.text[:300]}"
            )
        if comparable(foreign) != comparable(random):
            failures.append(f"{label}: differs from a random org's answer: {foreign.text[:300]}")
    return failures


async def test_owner_of_another_org_gets_404_like_a_random_id_everywhere(
    client: httpx.AsyncClient, app: Any
) -> None:
    """A's owner (token + X-Organization-ID: A) meets B's objects as 404s identical to random ids'."""
    world = await build_world(client, app)
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
    failures += await probe_org_header(client, app, world)
    assert not failures, "Cross-tenant answers that differ from a random id's 404:\n" + "\n".join(failures)
    assert await snapshot(app, world) == before, "org B's rows changed while A probed them"


async def test_api_key_of_another_org_gets_404_like_a_random_id_everywhere(
    client: httpx.AsyncClient, app: Any
) -> None:
    """An API key of A (role owner, no X-Organization-ID) meets B's objects as 404s like random ids'.

    Routes only for signed-in users refuse keys with 403 whatever the ids; the answer is still the
    same for B's ids and random ones.
    """
    world = await build_world(client, app)
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
    world = await build_world(client, app)
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
                (
                    await conn.execute(
                        text(
                            ORG_ID_TABLES + " AND (NOT c.relrowsecurity OR NOT EXISTS "
                            "(SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))"
                        )
                    )
                )
                .scalars()
                .all()
            )
            assert not unprotected, f"tables with org_id but no row-level security policy: {unprotected}"
            tenant_tables = (await conn.execute(text(ORG_ID_TABLES))).scalars().all()
            assert set(tables) <= set(tenant_tables), tenant_tables
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
            # Every other tenant table too (empty ones prove little, but new tables join automatically).
            for table in tenant_tables:
                seen = {str(r[0]) for r in await conn.execute(text(f'SELECT org_id FROM "{table}"'))}
                assert seen <= {org_a}, f"{table} bound to A shows {seen}"
            updated = await conn.execute(
                text("UPDATE workspaces SET description = 'hijacked' WHERE org_id = :b"),
                {"b": uuid.UUID(org_b)},
            )
            assert updated.rowcount == 0, "bound to A, an UPDATE reached B's workspaces"
            deleted = await conn.execute(
                text("DELETE FROM api_keys WHERE org_id = :b"), {"b": uuid.UUID(org_b)}
            )
            assert deleted.rowcount == 0, "bound to A, a DELETE reached B's API keys"
        finally:
            await bound.rollback()

        unbound = await conn.begin()
        try:
            for table in tenant_tables:
                seen = {str(r[0]) for r in await conn.execute(text(f'SELECT org_id FROM "{table}"'))}
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
