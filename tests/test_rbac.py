"""Every route declares its permission, and the role matrix holds on every org-scoped route.

Both tests read the routes from the application itself (route tree and OpenAPI document), so routes
added later are covered without editing this file: request bodies and query parameters are built from
their schemas, and the objects a path names are made by POSTing to their collection. Whatever the
tests cannot handle (a kind of id they cannot make, a body they cannot build) makes them fail with a
message naming the route and what to add. tests/test_isolation.py reuses these helpers.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
ORG_PATH = ORGS + "/{org_id}"
DECLARATIONS = frozenset({p.value for p in Permission} | {PUBLIC, AUTHENTICATED})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")

# Path parameters naming reference data that every org shares (the MITRE ATT&CK catalog): no org owns
# it, so the isolation tests do not probe these ids, and the matrix accepts "not found" for them (the
# catalog may be empty under test). Values are well-formed ids.
SHARED_PARAMS = {"technique_id": "T1059", "group_id": "G0007", "software_id": "S0002"}


def _domain() -> str:
    return f"matrix-{uuid.uuid4().hex[:12]}.example.com"


def _cve() -> str:
    return f"CVE-2024-{uuid.uuid4().int % 10**7:07d}"


# Bodies the generator's minimal ones would not get accepted (so no role could succeed), keyed by
# (METHOD, path as in the OpenAPI document): (kinds of object the body refers to, body given the ids).
BODY_EXAMPLES: dict[tuple[str, str], tuple[tuple[str, ...], Callable[[Mapping[str, str]], Any]]] = {
    ("POST", "/api/v1/indicators"): ((), lambda ids: {"value": _domain()}),
    ("POST", "/api/v1/indicators/bulk"): ((), lambda ids: {"items": [{"value": _domain()}]}),
    ("PATCH", "/api/v1/indicators/bulk"): (
        ("indicator_id",),
        lambda ids: {"filter": {"ids": [ids["indicator_id"]]}, "set": {"add_tags": ["matrix"]}},
    ),
    ("POST", "/api/v1/lookup"): ((), lambda ids: {"values": [_domain()]}),
    ("POST", "/api/v1/vulnerabilities"): ((), lambda ids: {"cve_id": _cve()}),
    ("POST", "/api/v1/relationships"): (
        ("indicator_id", "campaign_id"),
        lambda ids: {
            "source_id": ids["indicator_id"],
            "target_id": ids["campaign_id"],
            "relationship_type": "indicates",
        },
    ),
}


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


def route_for(app: FastAPI, method: str, path: str) -> Any:
    """The APIRoute serving `method path` (path as in the OpenAPI document)."""
    for route in api_routes(app):
        if route.path_format == path and method.upper() in route.methods:
            return route
    pytest.fail(f"{method.upper()} {path} is in the OpenAPI document but no APIRoute serves it")


def declaration_of(app: FastAPI, method: str, path: str) -> set[str]:
    """The declarations of the route serving `method path`."""
    return declarations(route_for(app, method, path))


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
            f"{path}: no {who} object for path parameter(s) {missing}. A new kind of id: teach "
            "make_objects() in tests/test_rbac.py to make one (CORE_MAKERS, ALIASES or SHARED_PARAMS)."
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
            # Unique (objects made for each call must not collide on unique names), within the bounds.
            low, high = max(int(schema.get("minLength", 1)), 1), int(schema.get("maxLength", 32))
            token = ("x" + uuid.uuid4().hex)[: max(min(high, 16), low)]
            value = token.ljust(low, "x")
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


def request_inputs(
    spec: dict[str, Any], method: str, path: str, ids: Mapping[str, str]
) -> tuple[dict[str, Any], Any]:
    """Minimal valid (query parameters, JSON body) of an operation; the body is None when it takes none.

    A hand-written example in BODY_EXAMPLES wins over the generated body. Fails naming the route when
    it needs something these tests cannot send (a non-JSON body, a required header or cookie).
    """
    op = operation(spec, method, path)
    where = f"{method.upper()} {path}"
    query = {}
    for param in op.get("parameters", []):
        if not param.get("required") or param["in"] == "path":
            continue
        if param["in"] != "query":
            pytest.fail(
                f"{where} requires {param['in']} {param['name']!r}; teach request_inputs() to send it"
            )
        query[param["name"]] = example(spec, param.get("schema", {}), ids, f"{where} ?{param['name']}")
    body = op.get("requestBody")
    if body is None:
        return query, None
    if (method.upper(), path) in BODY_EXAMPLES:
        return query, BODY_EXAMPLES[method.upper(), path][1](ids)
    content = body.get("content", {})
    if "application/json" not in content:
        pytest.fail(f"{where} takes a {sorted(content)} body; add an example to BODY_EXAMPLES")
    return query, example(spec, content["application/json"]["schema"], ids, f"{where} body")


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


# --- objects to act on -----------------------------------------------------------------------------------

Maker = Callable[[httpx.AsyncClient, Actor, str], Awaitable[str]]


async def _json(response: Any, status: int) -> dict[str, Any]:
    result = await response
    assert result.status_code == status, result.text
    return dict(result.json())


async def _make_workspace(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    body = {"name": f"ws-{uuid.uuid4().hex[:8]}"}
    made = await _json(client.post(f"{ORGS}/{org_id}/workspaces", json=body, headers=owner.headers), 201)
    return str(made["id"])


async def _make_key(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    body = {"name": "key", "role": "viewer"}
    made = await _json(client.post(f"{ORGS}/{org_id}/api-keys", json=body, headers=owner.headers), 201)
    return str(made["id"])


async def _make_invitation(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    body = {"email": f"invitee-{uuid.uuid4().hex[:12]}@example.com", "role": "viewer"}
    invited = await _json(client.post(f"{ORGS}/{org_id}/members", json=body, headers=owner.headers), 201)
    assert invited["status"] == "invited", invited
    return str(invited["invitation"]["id"])


# Objects whose making is not "POST to the collection, read the id back"; made by the org's owner.
# Every other `{thing_id}` is made by POST on the collection path before it (see `collection_posts`).
CORE_MAKERS: dict[str, Maker] = {
    "workspace_id": _make_workspace,
    "key_id": _make_key,
    "invitation_id": _make_invitation,
}
# Path parameters the fixtures fill themselves: the org, and a member (user) to act on.
GIVEN_PARAMS = frozenset({"org_id", "user_id"})
# Parameters that take an object of another kind: `object_id` is any intel object; an indicator is one.
ALIASES = {"object_id": "indicator_id"}


def _merge_domain_recipes() -> None:
    """Domains keep their recipes in tests/<domain>/route_examples.py (BODY_EXAMPLES, CORE_MAKERS,
    ALIASES, SHARED_PARAMS dicts, each optional), merged here so no domain edits this file."""
    for path in sorted(Path(__file__).resolve().parent.glob("*/route_examples.py")):
        module = importlib.import_module(f"tests.{path.parent.name}.route_examples")
        BODY_EXAMPLES.update(getattr(module, "BODY_EXAMPLES", {}))
        CORE_MAKERS.update(getattr(module, "CORE_MAKERS", {}))
        ALIASES.update(getattr(module, "ALIASES", {}))
        SHARED_PARAMS.update(getattr(module, "SHARED_PARAMS", {}))


_merge_domain_recipes()


def collection_posts(spec: dict[str, Any]) -> dict[str, str]:
    """For each path parameter `{thing_id}`, the POST path that creates what it names.

    Found by REST shape: `/things/{thing_id}` is made by POST on `/things` itself or, failing that, on
    any path ending in `/things` (a collection nested under a parent, e.g. `/parents/{parent_id}/things`).
    """
    posts = sorted((p for p, item in spec["paths"].items() if "post" in item), key=len)
    out: dict[str, str] = {}
    for path in spec["paths"]:
        for match in re.finditer(r"/([^/{}]+)/\{(\w+)(?::[^}]*)?\}", path):
            segment, name = match.groups()
            exact = path[: match.end(1)]
            found = [p for p in posts if p == exact] or [p for p in posts if p.endswith("/" + segment)]
            if found and name not in out:
                out[name] = found[0]
    return out


def known_params(spec: dict[str, Any], *extra: str) -> set[str]:
    """Path parameters the fixtures can fill."""
    makeable = {*GIVEN_PARAMS, *CORE_MAKERS, *SHARED_PARAMS, *collection_posts(spec), *extra}
    return makeable | {alias for alias, kind in ALIASES.items() if kind in makeable}


def unknown_params(spec: dict[str, Any], paths: Iterable[str], *extra: str) -> list[str]:
    """'path: {param}' for every parameter of `paths` the fixtures cannot fill."""
    known = known_params(spec, *extra)
    return sorted({f"{path}: {{{p}}}" for path in paths for p in PATH_PARAM.findall(path) if p not in known})


UNKNOWN_KIND_HELP = (
    "Path parameters of a kind the tests cannot make. Either give the collection a POST (`/things` for "
    "`/things/{thing_id}`), or add a recipe to CORE_MAKERS (or SHARED_PARAMS for reference data no org "
    "owns) in tests/test_rbac.py:\n"
)


def _uuid_fields(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = _resolve(spec, schema)
    out: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        out |= _uuid_fields(spec, option)
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        prop = _resolve(spec, properties.get(name, {}))
        if prop.get("format") == "uuid":
            out.add(name)
        else:
            out |= _uuid_fields(spec, prop)
    return out


def references(spec: dict[str, Any], method: str, path: str) -> set[str]:
    """The kinds of object a call needs to exist: its path parameters and the ids its body carries."""
    needs = set(PATH_PARAM.findall(path))
    key = (method.upper(), path)
    if key in BODY_EXAMPLES:
        return needs | set(BODY_EXAMPLES[key][0])
    body = operation(spec, method, path).get("requestBody")
    if body and "application/json" in body.get("content", {}):
        needs |= _uuid_fields(spec, body["content"]["application/json"]["schema"])
    return needs


async def make_objects(
    client: httpx.AsyncClient,
    app: FastAPI,
    ids: dict[str, str],
    kinds: Iterable[str],
    actor_for: Callable[[Role], Actor],
) -> None:
    """Create in org `ids["org_id"]` one object of each kind in `kinds` that `ids` lacks (and what they need).

    CORE_MAKERS are run as `actor_for(owner)`; other objects are POSTed to their collection by
    `actor_for(the weakest role allowed to)` (so "editors change what they created" holds for editors).
    """
    spec = app.openapi()
    posts = collection_posts(spec)
    org_id = ids["org_id"]

    async def ensure(kind: str, chain: tuple[str, ...]) -> None:
        if kind in ids:
            return
        if kind in chain:
            pytest.fail(f"objects that need each other: {' -> '.join((*chain, kind))}")
        if kind in ALIASES:
            await ensure(ALIASES[kind], (*chain, kind))
            ids[kind] = ids[ALIASES[kind]]
            return
        if kind in CORE_MAKERS:
            ids[kind] = await CORE_MAKERS[kind](client, actor_for(Role.owner), org_id)
            return
        if kind not in posts:
            pytest.fail(UNKNOWN_KIND_HELP + f"{{{kind}}}")
        post = posts[kind]
        for needed in sorted(references(spec, "POST", post)):
            await ensure(needed, (*chain, kind))
        permission = route_permission(route_for(app, "POST", post))
        actor = actor_for(MATRIX[permission] if permission else Role.owner)
        query, body = request_inputs(spec, "POST", post, ids)
        response = await client.post(
            fill_path(post, ids, "org"), params=query, json=body, headers=actor.in_org(org_id)
        )
        if response.status_code not in (200, 201):
            pytest.fail(
                f"making a {{{kind}}} by POST {post} gave {response.status_code}: {response.text[:300]}; "
                "add a body to BODY_EXAMPLES in tests/test_rbac.py"
            )
        location = response.headers.get("location")
        ids[kind] = location.rstrip("/").rsplit("/", 1)[-1] if location else str(response.json()["id"])

    for kind in sorted(kinds):
        await ensure(kind, ())


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


async def make_cast(client: httpx.AsyncClient) -> Cast:
    """Sign up an owner, an admin, an editor, a viewer and a target member."""
    by_role = {role: await sign_up(client, f"matrix-{role.value}@example.com") for role in Role}
    return Cast(by_role=by_role, target=await sign_up(client, "matrix-target@example.com"))


async def new_org(
    client: httpx.AsyncClient,
    app: FastAPI,
    cast: Cast,
    kinds: Iterable[str],
    roles: Iterable[Role] = tuple(Role),
) -> dict[str, str]:
    """A fresh org with a member of each of `roles` (the owner always), one object of each kind, and
    the viewer target member when `kinds` has `user_id` or `roles` is everything.

    Returns the ids by the path-parameter names that address them (`user_id`: the target member).
    """
    owner = cast.owner
    roles = set(roles)
    kinds = set(kinds)
    org_id = await create_org(owner, f"matrix-{uuid.uuid4().hex[:12]}")
    for role in sorted(roles - {Role.owner}, key=lambda r: r.rank):
        await add_member(owner, org_id, cast.by_role[role], role.value)
    if "user_id" in kinds or roles == set(Role):
        await add_member(owner, org_id, cast.target, Role.viewer.value)
    ids = {"org_id": org_id, "user_id": cast.target.user_id, **SHARED_PARAMS}
    await make_objects(client, app, ids, kinds - GIVEN_PARAMS, lambda role: cast.by_role[role])
    return ids


def org_scoped_operations(app: FastAPI) -> list[tuple[str, str, Permission]]:
    """(METHOD, path, permission) of every route that requires an org permission."""
    out = []
    for route in api_routes(app):
        permission = route_permission(route)
        if permission is not None:
            out.extend((method, route.path_format, permission) for method in sorted(route.methods))
    return sorted(out, key=lambda op: (op[1], op[0]))


def acts_on_the_org(spec: dict[str, Any], method: str, path: str) -> bool:
    """A write to the org itself or its memberships: the org's own URLs, naming no object inside it,
    and not a create on a listable collection (delete, rename, leave, transfer, change a member)."""
    if method in SAFE_METHODS or not path.startswith(ORG_PATH):
        return False
    if references(spec, method, path) - GIVEN_PARAMS:
        return False
    return not (method == "POST" and "get" in spec["paths"][path])


async def test_role_matrix_holds_on_every_org_scoped_route(client: httpx.AsyncClient, app: Any) -> None:
    """Below MATRIX[permission] → 403; at or above → never 401/403/404 (business 4xx are fine)."""
    spec = app.openapi()
    operations = org_scoped_operations(app)
    assert len(operations) >= 10, operations
    unknown = unknown_params(spec, {path for _m, path, _p in operations})
    if unknown:
        pytest.fail(UNKNOWN_KIND_HELP + "\n".join(unknown))
    cast = await make_cast(client)
    shared = await new_org(client, app, cast, ())
    base = dict(shared)
    failures: list[str] = []
    for method, path, permission in operations:
        needed = MATRIX[permission]
        kinds = references(spec, method, path)
        reference_data = any(p in SHARED_PARAMS for p in kinds)
        outcomes: dict[Role, int] = {}
        for role in Role:
            # No call may see another's effects: writes to the org itself (delete, transfer, leave,
            # members) get a fresh org each; other writes by allowed roles get fresh objects in the
            # shared org. Reads, and writes that must be refused before they touch anything, use the
            # shared org's objects (made as routes first need them).
            if acts_on_the_org(spec, method, path):
                ids = await new_org(client, app, cast, kinds, {role})
            else:
                fresh = method not in SAFE_METHODS and role.at_least(needed)
                ids = dict(base) if fresh else shared
                await make_objects(client, app, ids, kinds, lambda r: cast.by_role[r])
            url = fill_path(path, ids, "org")
            query, body = request_inputs(spec, method, path, ids)
            headers = cast.by_role[role].in_org(ids["org_id"])
            response = await client.request(method, url, params=query, json=body, headers=headers)
            status = outcomes[role] = response.status_code
            label = f"{method} {path} [{permission.value}, needs {needed.value}] as {role.value}"
            if role.at_least(needed):
                # 404 is fine only for reference data (the ATT&CK catalog may be empty under test).
                if status in (401, 403) or (status == 404 and not reference_data) or status >= 500:
                    failures.append(f"{label}: allowed role got {status} {response.text[:300]}")
            elif status != 403:
                failures.append(f"{label}: expected 403, got {status} {response.text[:300]}")
        allowed = {role.value: s for role, s in outcomes.items() if role.at_least(needed)}
        if not reference_data and not any(200 <= s < 300 for s in allowed.values()):
            failures.append(
                f"{method} {path}: no allowed role succeeded ({allowed}); the test's ids or body are wrong "
                "(add a body to BODY_EXAMPLES)"
            )
    assert not failures, "Role-matrix violations:\n" + "\n".join(failures)
