"""Every route declares its permission, and the role matrix holds on every org-scoped route.

Both tests read the routes from the application itself, so routes added later are covered without
editing this file; whatever they cannot handle (an unknown path parameter, a body they cannot
build) makes them fail with a message that names the route.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from raptorflow.auth.deps import AUTHENTICATED, PERMISSION_ATTR, PUBLIC, PublicRoute, UserDep, require
from raptorflow.auth.permissions import MATRIX, Permission, Role
from raptorflow.auth.principal import OrgContext
from tests.conftest import Actor, add_member, create_org, sign_up

ORGS = "/api/v1/organizations"
DECLARATIONS = frozenset({p.value for p in Permission} | {PUBLIC, AUTHENTICATED})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


# --- reading the routes ---------------------------------------------------------------------------


def route_contexts(app: FastAPI) -> list[Any]:
    """Every route the app serves, flattened through included routers (full path, effective deps)."""
    return list(iter_route_contexts(app.routes))


def api_routes(app: FastAPI) -> list[Any]:
    """The FastAPI routes (APIRoute) among them."""
    return [rc for rc in route_contexts(app) if isinstance(rc.original_route, APIRoute)]


def _calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def declarations(route: Any) -> set[str]:
    """The permission declarations found anywhere in a route's dependency tree."""
    return {
        getattr(call, PERMISSION_ATTR)
        for call in _calls(route.dependant)
        if call is not None and hasattr(call, PERMISSION_ATTR)
    }


def declaration_problem(found: set[str]) -> str | None:
    """Why a set of declarations is not a valid one (None when it is)."""
    if not found:
        return "declares no permission (use require(Permission.X), UserDep or PublicRoute)"
    unknown = found - DECLARATIONS
    if unknown:
        return f"declares unknown permission(s) {sorted(unknown)}"
    if PUBLIC in found and len(found) > 1:
        return f"is declared both public and {sorted(found - {PUBLIC})}"
    return None


def undeclared_routes(app: FastAPI) -> list[str]:
    """'METHODS path: problem' for every APIRoute without a valid permission declaration."""
    offenders = []
    for route in api_routes(app):
        problem = declaration_problem(declarations(route))
        if problem:
            offenders.append(f"{','.join(sorted(route.methods))} {route.path}: {problem}")
    return offenders


def route_permission(route: Any) -> Permission | None:
    """The org permission a route requires (the strongest, if it declares several), or None."""
    values = {p.value: p for p in Permission}
    found = [values[v] for v in declarations(route) if v in values]
    return max(found, key=lambda p: MATRIX[p].rank) if found else None


def declaration_of(app: FastAPI, method: str, path: str) -> set[str]:
    """The declarations of the route serving `method path` (path as in the OpenAPI document)."""
    for route in api_routes(app):
        if route.path_format == path and method.upper() in route.methods:
            return declarations(route)
    pytest.fail(f"{method.upper()} {path} is in the OpenAPI document but no APIRoute serves it")


def docs_paths(app: FastAPI) -> set[str]:
    """FastAPI's own documentation routes."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url}
    if app.docs_url and app.swagger_ui_oauth2_redirect_url:
        paths.add(app.swagger_ui_oauth2_redirect_url)
    return {p for p in paths if p}


# --- building requests from the OpenAPI document -----------------------------------------------------


def fill_path(path: str, ids: Mapping[str, str], who: str) -> str:
    """The path with every `{param}` replaced from `ids`; fails naming the path when one is unknown."""
    names = PATH_PARAM.findall(path)
    missing = [n for n in names if n not in ids]
    if missing:
        pytest.fail(
            f"{path}: no {who} object for path parameter(s) {missing}. A new kind of id: create one "
            "in the fixtures of tests/test_rbac.py and tests/test_isolation.py and map its name."
        )
    return PATH_PARAM.sub(lambda m: str(ids[m.group(1)]), path)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def example(spec: dict[str, Any], schema: dict[str, Any], ids: Mapping[str, str], where: str) -> Any:
    """The smallest value valid under `schema`; UUID fields take the object their name maps to."""
    schema = _resolve(spec, schema)
    name = where.rsplit(".", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return example(spec, options[0], ids, where)
    if "allOf" in schema:
        if len(schema["allOf"]) != 1:
            pytest.fail(f"{where}: allOf with several parts; teach example() to merge them")
        return example(spec, schema["allOf"][0], ids, where)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            field: example(spec, properties.get(field, {}), ids, f"{where}.{field}")
            for field in schema.get("required", [])
        }
    if kind == "array":
        return [example(spec, schema.get("items", {}), ids, where) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "number":
        return float(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1))
    if kind == "boolean":
        return True
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            if name not in ids:
                pytest.fail(f"{where}: UUID field {name!r} names no known object; map it in the fixtures")
            return str(ids[name])
        if fmt == "email":
            value = f"matrix-{uuid.uuid4().hex[:12]}@example.com"
        elif fmt == "date-time":
            value = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        elif fmt is None:
            value = "x" * max(int(schema.get("minLength", 1)), 1)
        else:
            pytest.fail(f"{where}: no example for string format {fmt!r}; add one to example()")
        pattern = schema.get("pattern")
        if pattern and not re.search(pattern, value):
            pytest.fail(f"{where}: example {value!r} does not match {pattern!r}; add a case to example()")
        return value
    pytest.fail(f"{where}: cannot build a value for schema {schema}; add a case to example()")


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The OpenAPI operation of `method path`."""
    try:
        return dict(spec["paths"][path][method.lower()])
    except KeyError:
        pytest.fail(f"{method.upper()} {path} is served but missing from the OpenAPI document")


def request_body(spec: dict[str, Any], method: str, path: str, ids: Mapping[str, str]) -> Any:
    """A minimal valid JSON body for an operation (None when it takes none).

    Fails naming the route when it needs something these tests cannot send (a non-JSON body, a
    required query parameter or header).
    """
    op = operation(spec, method, path)
    where = f"{method.upper()} {path}"
    required = [
        f"{p['in']}:{p['name']}" for p in op.get("parameters", []) if p.get("required") and p["in"] != "path"
    ]
    if required:
        pytest.fail(f"{where} requires {required}; teach request_body() in tests/test_rbac.py to send them")
    body = op.get("requestBody")
    if body is None:
        return None
    content = body.get("content", {})
    if "application/json" not in content:
        pytest.fail(f"{where} takes a {sorted(content)} body; teach request_body() to send one")
    return example(spec, content["application/json"]["schema"], ids, f"{where} body")


# --- every route declares a permission -----------------------------------------------------------------


async def _probe_dependency() -> None:
    return None


setattr(_probe_dependency, PERMISSION_ATTR, "org:reed")


async def _nested_org_read(ctx: Annotated[OrgContext, require(Permission.org_read)]) -> OrgContext:
    return ctx


def test_declaration_finder_flags_what_it_should() -> None:
    """The finder itself: it walks nested dependencies and router prefixes, and flags what it must."""
    probe = FastAPI()
    router = APIRouter(prefix="/probe")

    @router.get("/bare")
    async def bare() -> None:
        return None

    @router.get("/typo", dependencies=[Depends(_probe_dependency)])
    async def typo() -> None:
        return None

    @router.get("/public-and-user", dependencies=[PublicRoute])
    async def public_and_user(principal: UserDep) -> None:
        return None

    @router.get("/public", dependencies=[PublicRoute])
    async def public() -> None:
        return None

    @router.get("/user")
    async def user(principal: UserDep) -> None:
        return None

    @router.get("/{org_id}/nested", dependencies=[Depends(_nested_org_read)])
    async def nested() -> None:
        return None

    probe.include_router(router)
    assert {r.path for r in api_routes(probe)} >= {"/probe/bare", "/probe/{org_id}/nested"}
    offenders = undeclared_routes(probe)
    assert [o.split(":")[0] for o in offenders] == [
        "GET /probe/bare",
        "GET /probe/typo",
        "GET /probe/public-and-user",
    ], offenders
    nested_route = next(r for r in api_routes(probe) if r.path == "/probe/{org_id}/nested")
    assert route_permission(nested_route) is Permission.org_read


async def test_every_route_declares_its_permission(app: Any) -> None:
    """No APIRoute without a permission, 'public' or 'authenticated' declaration in its dependencies."""
    routes = api_routes(app)
    assert len(routes) > 10, "the app serves suspiciously few routes; is iter_route_contexts still right?"
    offenders = undeclared_routes(app)
    assert not offenders, "Routes without a valid permission declaration:\n" + "\n".join(offenders)
    # Only FastAPI's documentation routes are not APIRoutes; anything else (a Mount, a bare Starlette
    # route) cannot carry a declaration and must be looked at.
    docs = docs_paths(app)
    others = [
        f"{type(rc.original_route).__name__} {rc.path}"
        for rc in route_contexts(app)
        if not isinstance(rc.original_route, APIRoute) and rc.path not in docs
    ]
    assert not others, "Routes outside FastAPI's dependency system (no permission possible):\n" + "\n".join(
        others
    )
    assert docs <= {rc.path for rc in route_contexts(app) if not isinstance(rc.original_route, APIRoute)}
    assert set(MATRIX) == set(Permission), "every permission needs a minimum role in MATRIX"


# --- the role matrix ------------------------------------------------------------------------------------


@dataclass
class Cast:
    """One user per role (the same users in every org the factory makes), plus a member to act on."""

    by_role: dict[Role, Actor]
    target: Actor

    @property
    def owner(self) -> Actor:
        """The creator of every org."""
        return self.by_role[Role.owner]


async def _json(response: Any, status: int) -> dict[str, Any]:
    result = await response
    assert result.status_code == status, result.text
    return dict(result.json())


async def make_cast(client: httpx.AsyncClient) -> Cast:
    """Sign up an owner, an admin, an editor, a viewer and a target member."""
    by_role = {role: await sign_up(client, f"matrix-{role.value}@example.com") for role in Role}
    return Cast(by_role=by_role, target=await sign_up(client, "matrix-target@example.com"))


async def new_org(client: httpx.AsyncClient, cast: Cast) -> dict[str, str]:
    """A fresh org with every role, a viewer target member, a workspace, an API key and an invitation.

    Returns the ids by the path-parameter names that address them.
    """
    owner = cast.owner
    org_id = await create_org(owner, f"matrix-{uuid.uuid4().hex[:12]}")
    for role in (Role.admin, Role.editor, Role.viewer):
        await add_member(owner, org_id, cast.by_role[role], role.value)
    await add_member(owner, org_id, cast.target, Role.viewer.value)
    base = f"{ORGS}/{org_id}"
    workspace = await _json(client.post(f"{base}/workspaces", json={"name": "ws"}, headers=owner.headers), 201)
    key = await _json(
        client.post(f"{base}/api-keys", json={"name": "key", "role": "viewer"}, headers=owner.headers), 201
    )
    invited = await _json(
        client.post(
            f"{base}/members",
            json={"email": f"invitee-{uuid.uuid4().hex[:12]}@example.com", "role": "viewer"},
            headers=owner.headers,
        ),
        201,
    )
    assert invited["status"] == "invited", invited
    return {
        "org_id": org_id,
        "workspace_id": workspace["id"],
        "key_id": key["id"],
        "invitation_id": invited["invitation"]["id"],
        "user_id": cast.target.user_id,
    }


def org_scoped_operations(app: FastAPI) -> list[tuple[str, str, Permission]]:
    """(METHOD, path, permission) of every route that requires an org permission."""
    out = []
    for route in api_routes(app):
        permission = route_permission(route)
        if permission is not None:
            out.extend((method, route.path_format, permission) for method in sorted(route.methods))
    return sorted(out, key=lambda op: (op[1], op[0]))


async def test_role_matrix_holds_on_every_org_scoped_route(client: httpx.AsyncClient, app: Any) -> None:
    """Below MATRIX[permission] → 403; at or above → never 401/403/404 (business 4xx are fine)."""
    spec = app.openapi()
    operations = org_scoped_operations(app)
    assert len(operations) >= 10, operations
    cast = await make_cast(client)
    shared = await new_org(client, cast)
    failures: list[str] = []
    for method, path, permission in operations:
        needed = MATRIX[permission]
        outcomes: dict[Role, int] = {}
        for role in Role:
            # Writes run in a fresh org each, so no call sees another's effects (deleted org, new owner).
            ids = shared if method in SAFE_METHODS else await new_org(client, cast)
            url = fill_path(path, ids, "org")
            body = request_body(spec, method, path, ids)
            headers = cast.by_role[role].in_org(ids["org_id"])
            response = await client.request(method, url, json=body, headers=headers)
            status = outcomes[role] = response.status_code
            label = f"{method} {path} [{permission.value}, needs {needed.value}] as {role.value}"
            if role.at_least(needed):
                if status in (401, 403, 404) or status >= 500:
                    failures.append(f"{label}: allowed role got {status} {response.text[:300]}")
            elif status != 403:
                failures.append(f"{label}: expected 403, got {status} {response.text[:300]}")
        allowed = {role.value: s for role, s in outcomes.items() if role.at_least(needed)}
        if not any(200 <= s < 300 for s in allowed.values()):
            failures.append(
                f"{method} {path}: no allowed role succeeded ({allowed}); the test's ids or body are wrong"
            )
    assert not failures, "Role-matrix violations:\n" + "\n".join(failures)
