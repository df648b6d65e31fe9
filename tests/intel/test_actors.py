"""Threat actors and campaigns: CRUD, validation, uniqueness, filters, paging, archive, roles, tenancy,
ATT&CK Navigator layers and the import of ATT&CK groups. Helpers here are shared with the
vulnerability and report tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.intel.attack import loader, service
from raptorflow.intel.attack.navigator import (
    GRADIENT_HIGH,
    GRADIENT_LOW,
    IMPLIED_COLOR,
    gradient_color,
    layer,
)
from raptorflow.kit.db import new_id, utcnow
from raptorflow.models import AttackObject, AttackRelationship, Project
from tests.conftest import ATTACK_SAMPLE, Actor, add_member, create_org, sign_up, truncate_all

ACTORS = "/api/v1/threat-actors"
CAMPAIGNS = "/api/v1/campaigns"
SAMPLE = ATTACK_SAMPLE


# --- helpers shared by the context-object test modules ---------------------------------------------------


@dataclass
class Team:
    """An owner with two fresh orgs, and API keys of every role in the first one.

    Signing up costs argon2 hashes (~1 s per user on these machines), so one owner serves a whole
    module (see `owner`) and every test gets new orgs; roles are API keys, which carry no user and so
    make everything they create "someone else's" for ensure_may_remove.
    """

    org: str
    other_org: str
    owner: Actor
    keys: dict[str, str]

    def h(self, role: str = "owner") -> dict[str, str]:
        """Headers acting in the first org as the owner or with the key of `role`."""
        if role == "owner":
            return self.owner.in_org(self.org)
        return {"X-API-Key": self.keys[role]}

    @property
    def other(self) -> dict[str, str]:
        """Headers acting in the second org."""
        return self.owner.in_org(self.other_org)


@pytest.fixture(scope="module")
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client shared by the tests of one module; the tables are emptied once, after the module.

    Tests stay independent because each works in orgs of its own (the `team` fixture).
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await truncate_all(app)
    await app.state.limiter.storage.reset()
    await app.state.token_issuer.reload(force=True)


@pytest.fixture(scope="module")
async def owner(http: httpx.AsyncClient) -> Actor:
    """The one signed-up user of a module."""
    return await sign_up(http, f"owner-{uuid.uuid4().hex[:8]}@example.com")


@pytest.fixture
async def team(http: httpx.AsyncClient, owner: Actor) -> Team:
    """Two new orgs of the module's owner, with viewer, editor and admin keys in the first."""
    tag = uuid.uuid4().hex[:10]
    org = await create_org(owner, f"context-{tag}")
    other_org = await create_org(owner, f"elsewhere-{tag}")
    keys = {}
    for role in ("viewer", "editor", "admin"):
        key = await http.post(
            f"/api/v1/organizations/{org}/api-keys", json={"name": role, "role": role}, headers=owner.headers
        )
        assert key.status_code == 201, key.text
        keys[role] = key.json()["secret"]
    return Team(org, other_org, owner, keys)


async def join_as_editor(http: httpx.AsyncClient, team: Team) -> Actor:
    """A signed-in user with the editor role in the team's first org."""
    editor = await sign_up(http, f"editor-{uuid.uuid4().hex[:8]}@example.com")
    await add_member(team.owner, team.org, editor, "editor")
    return editor


async def created(response: httpx.Response) -> dict[str, Any]:
    """The body of a 201, checking its Location."""
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"].endswith(f"/{body['id']}")
    return body


def problem_field(response: httpx.Response, status: int = 422) -> str:
    """The field a problem document names (our InvalidInput or FastAPI's validation errors)."""
    assert response.status_code == status, response.text
    body = response.json()
    error = body["errors"][0]
    return str(error["field"]).removeprefix("body.")


def problem_message(response: httpx.Response) -> str:
    """The message of the first error of a problem document."""
    return str(response.json()["errors"][0]["message"])


async def all_items(http: httpx.AsyncClient, url: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Walk every page of a list; returns the items in order."""
    items: list[Any] = []
    cursor = None
    for _ in range(100):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        page = await http.get(url, params=query, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging does not end")


async def insert_project(app: Any, org_id: str, name: str) -> str:
    """A project row written through the table owner (no projects API is needed for these tests)."""
    engine = create_async_engine(app.state.settings.database_url)
    project_id = new_id()
    now = utcnow()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                Project.__table__.insert().values(
                    id=project_id,
                    org_id=uuid.UUID(org_id),
                    name=name,
                    description="",
                    tags=[],
                    extra={},
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()
    return str(project_id)


async def load_attack_sample(app: Any) -> None:
    """Load the ATT&CK sample catalog (committed: call unload_attack when done)."""
    parsed = loader.parse_bundle(SAMPLE.read_bytes())
    async with app.state.session_factory() as session:
        await service.sync_bundle(session, parsed)
        await session.commit()


async def unload_attack(app: Any) -> None:
    """Empty the ATT&CK catalog again, so technique ids are checked by shape only."""
    engine = create_async_engine(app.state.settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(AttackRelationship.__table__.delete())
            await conn.execute(AttackObject.__table__.delete())
    finally:
        await engine.dispose()


# --- threat actors ---------------------------------------------------------------------------------------


async def test_actor_crud_normalizes_fields(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h()
    body = await created(
        await http.post(
            ACTORS,
            json={
                "name": "  Fancy Bear ",
                "aliases": ["APT28", "apt28", " Sofacy "],
                "motivation": "organizational-gain",
                "sophistication": "expert",
                "country": "ru",
                "first_seen": "2008-01-01T00:00:00Z",
                "last_seen": "2024-06-01T00:00:00+02:00",
                "attack_techniques": ["t1059.001", "T1566"],
                "tags": ["Espionage", "espionage "],
                "tlp": "green",
                "description": "Russian GRU unit 26165.",
            },
            headers=h,
        )
    )
    assert body["name"] == "Fancy Bear"
    assert body["aliases"] == ["APT28", "Sofacy"]
    assert body["country"] == "RU"
    assert body["attack_techniques"] == ["T1059.001", "T1566"]
    assert body["tags"] == ["espionage"]
    assert body["tlp"] == "green" and body["motivation"] == "organizational-gain"
    assert body["stix_id"] == f"threat-actor--{body['id']}"
    assert body["created_by"] == team.owner.user_id
    assert body["archived_at"] is None and body["attack_group_id"] is None
    assert body["last_seen"].startswith("2024-05-31T22:00:00")

    one = await http.get(f"{ACTORS}/{body['id']}", headers=team.h("viewer"))
    assert one.status_code == 200 and one.json() == body

    patched = await http.patch(
        f"{ACTORS}/{body['id']}", json={"country": None, "sophistication": "strategic"}, headers=h
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["country"] is None and patched.json()["sophistication"] == "strategic"
    assert patched.json()["name"] == "Fancy Bear" and patched.json()["updated_at"] > body["updated_at"]
    assert (await http.get(f"{ACTORS}/{body['id']}", headers=h)).json() == patched.json()

    assert (await http.delete(f"{ACTORS}/{body['id']}", headers=h)).status_code == 204
    gone = await http.get(f"{ACTORS}/{body['id']}", headers=h)
    random = await http.get(f"{ACTORS}/{uuid.uuid4()}", headers=h)
    assert gone.status_code == random.status_code == 404


async def test_actor_validation_reasons(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")

    async def create(**body: Any) -> httpx.Response:
        return await http.post(ACTORS, json={"name": "X", **body}, headers=h)

    for country in ("RUS", "R1", "", "1A"):
        assert problem_field(await create(country=country)) == "country", country
    assert "ISO 3166-1 alpha-2" in problem_message(await create(country="RUS"))
    backwards = await create(first_seen="2024-01-02T00:00:00Z", last_seen="2024-01-01T00:00:00Z")
    assert problem_field(backwards) == "last_seen"
    assert problem_field(await create(attack_techniques=["X1059"])) == "attack_techniques"
    assert problem_field(await create(motivation="greed")) == "motivation"
    assert problem_field(await create(sophistication="elite")) == "sophistication"
    assert problem_field(await create(first_seen="2024-01-01T00:00:00")) == "first_seen"  # naive
    assert problem_field(await create(org_id=team.other_org)) == "org_id"
    assert problem_field(await create(created_by=team.owner.user_id)) == "created_by"
    assert problem_field(await create(attack_group_id="G0007")) == "attack_group_id"
    assert problem_field(await create(tlp="purple")) == "tlp"
    assert problem_field(await create(name="   ")) == "name"
    # What no column can store is refused by name, not turned into a 500.
    assert problem_field(await create(name="a\x00b")) == "name"
    assert problem_field(await create(aliases=["ok", "nul\x00"])) == "aliases"
    surrogate = b'{"name": "x", "description": "\\ud800"}'
    lone = await http.post(ACTORS, content=surrogate, headers={**h, "Content-Type": "application/json"})
    assert problem_field(lone) == "description"
    assert problem_field(await http.get(ACTORS, params={"q": "a\x00"}, headers=h)) == "q"

    actor = await created(await create(first_seen="2024-01-01T00:00:00Z"))
    url = f"{ACTORS}/{actor['id']}"
    # last_seen is checked against the stored first_seen.
    stale = await http.patch(url, json={"last_seen": "2023-01-01T00:00:00Z"}, headers=h)
    assert problem_field(stale) == "last_seen"
    assert problem_field(await http.patch(url, json={"name": None}, headers=h)) == "name"
    assert problem_field(await http.patch(url, json={"country": "XYZ"}, headers=h)) == "country"

    for sort in ("bogus", "name, -first_seen", "+name", "-password", ",", ""):
        assert problem_field(await http.get(ACTORS, params={"sort": sort}, headers=h)) == "sort"
    assert "accepted: created_at, first_seen" in problem_message(
        await http.get(ACTORS, params={"sort": "bogus"}, headers=h)
    )
    assert problem_field(await http.get(ACTORS, params={"cursor": "garbage!"}, headers=h)) == "cursor"
    assert problem_field(await http.get(ACTORS, params={"country": "RUS"}, headers=h)) == "country"
    # A cursor made for one sort order is refused under another.
    await created(await create(name="Y"))
    page = await http.get(ACTORS, params={"limit": 1, "sort": "name"}, headers=h)
    cursor = page.json()["next_cursor"]
    assert cursor is not None
    other_order = await http.get(ACTORS, params={"cursor": cursor, "sort": "-name"}, headers=h)
    assert problem_field(other_order) == "cursor"


async def test_actor_and_campaign_names_are_unique_per_org(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    for url in (ACTORS, CAMPAIGNS):
        first = await created(await http.post(url, json={"name": "Sandworm"}, headers=h))
        second = await created(await http.post(url, json={"name": "Turla"}, headers=h))
        duplicate = await http.post(url, json={"name": "SANDWORM"}, headers=h)
        assert problem_field(duplicate, 409) == "name"
        renamed = await http.patch(f"{url}/{second['id']}", json={"name": "sandworm"}, headers=h)
        assert problem_field(renamed, 409) == "name"
        # Renaming to its own name is no conflict; another org may use the name.
        same = await http.patch(f"{url}/{first['id']}", json={"name": "Sandworm"}, headers=h)
        assert same.status_code == 200, same.text
        await created(await http.post(url, json={"name": "Sandworm"}, headers=team.other))


async def test_actor_filters_sorting_and_paging(http: httpx.AsyncClient, app: Any, team: Team) -> None:
    h = team.h("editor")
    project = await insert_project(app, team.org, "ops")
    ws = await http.post(
        f"/api/v1/organizations/{team.org}/workspaces", json={"name": "desk"}, headers=team.owner.headers
    )
    assert ws.status_code == 201, ws.text
    workspace = ws.json()["id"]
    specs: list[dict[str, Any]] = [
        {
            "name": "Alpha",
            "country": "RU",
            "motivation": "ideology",
            "tags": ["apt"],
            "first_seen": "2020-01-01T00:00:00Z",
        },
        {"name": "Bravo", "aliases": ["Cozy Bear"], "country": "ru", "project_id": project, "tlp": "red"},
        {
            "name": "Charlie",
            "country": "KP",
            "motivation": "personal-gain",
            "first_seen": "2018-01-01T00:00:00Z",
        },
        {
            "name": "Delta",
            "description": "Targets 100% of_banks",
            "workspace_id": workspace,
            "tags": ["APT", "fin"],
        },
        {"name": "Echo", "country": "CN", "first_seen": "2022-01-01T00:00:00Z"},
    ]
    for spec in specs:
        await created(await http.post(ACTORS, json=spec, headers=h))

    async def names(**params: Any) -> list[str]:
        return [a["name"] for a in await all_items(http, ACTORS, h, **params)]

    assert await names(sort="name") == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
    assert await names(q="cozy", sort="name") == ["Bravo"]  # an alias, ignoring case
    assert await names(q="100%", sort="name") == ["Delta"]  # LIKE wildcards are literal
    assert await names(q="f_b", sort="name") == ["Delta"]
    assert await names(q="HARL") == ["Charlie"]
    assert await names(country="ru", sort="name") == ["Alpha", "Bravo"]
    assert await names(motivation="personal-gain") == ["Charlie"]
    assert await names(tag="APT", sort="name") == ["Alpha", "Delta"]
    assert await names(tlp="red") == ["Bravo"]
    assert await names(project_id=project) == ["Bravo"]
    assert await names(workspace_id=workspace) == ["Delta"]
    assert await names(project_id=str(uuid.uuid4())) == []
    assert await names(q="ALP", country="RU", tag="apt") == ["Alpha"]  # filters combine

    # Pages of 2 in several orders: every row exactly once, in order; a NULL first_seen sorts lowest.
    assert await names(sort="-name", limit=2) == ["Echo", "Delta", "Charlie", "Bravo", "Alpha"]
    assert await names(sort="-first_seen,name", limit=2) == ["Echo", "Alpha", "Charlie", "Bravo", "Delta"]
    assert await names(sort="first_seen,-name", limit=2) == ["Delta", "Bravo", "Charlie", "Alpha", "Echo"]
    assert await names(limit=2) == ["Echo", "Delta", "Charlie", "Bravo", "Alpha"]  # default -created_at
    full = await http.get(ACTORS, params={"limit": 5}, headers=h)
    assert len(full.json()["items"]) == 5 and full.json()["next_cursor"] is not None
    assert (await http.get(ACTORS, params={"limit": 1001}, headers=h)).status_code == 422


async def test_archive_and_who_may_remove(http: httpx.AsyncClient, team: Team) -> None:
    editor = await join_as_editor(http, team)
    mine = await created(await http.post(ACTORS, json={"name": "Mine"}, headers=editor.in_org(team.org)))
    url = f"{ACTORS}/{mine['id']}"
    viewer = team.h("viewer")
    assert (await http.post(ACTORS, json={"name": "V"}, headers=viewer)).status_code == 403
    assert (await http.patch(url, json={"description": "x"}, headers=viewer)).status_code == 403
    assert (await http.post(f"{url}/archive", headers=viewer)).status_code == 403
    assert (await http.delete(url, headers=viewer)).status_code == 403

    other_editor = team.h("editor")
    # Another editor may edit, but not archive or delete what someone else created.
    assert (await http.patch(url, json={"description": "edited"}, headers=other_editor)).status_code == 200
    assert (await http.post(f"{url}/archive", headers=other_editor)).status_code == 403
    assert (await http.delete(url, headers=other_editor)).status_code == 403

    archived = await http.post(f"{url}/archive", headers=editor.in_org(team.org))
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert (await http.get(ACTORS, headers=viewer)).json()["items"] == []
    shelved = await http.get(ACTORS, params={"archived": "true"}, headers=viewer)
    assert [a["id"] for a in shelved.json()["items"]] == [mine["id"]]
    assert (await http.get(url, headers=viewer)).status_code == 200  # still readable by id
    assert (await http.post(f"{url}/unarchive", headers=other_editor)).status_code == 403
    restored = await http.post(f"{url}/unarchive", headers=team.h("admin"))
    assert restored.status_code == 200 and restored.json()["archived_at"] is None
    assert [a["id"] for a in (await http.get(ACTORS, headers=viewer)).json()["items"]] == [mine["id"]]

    assert (await http.delete(url, headers=team.h("admin"))).status_code == 204
    assert (await http.get(url, headers=viewer)).status_code == 404
    own = await created(await http.post(ACTORS, json={"name": "Own"}, headers=editor.in_org(team.org)))
    assert (await http.delete(f"{ACTORS}/{own['id']}", headers=editor.in_org(team.org))).status_code == 204


async def test_other_orgs_objects_stay_invisible(http: httpx.AsyncClient, app: Any, team: Team) -> None:
    h = team.h("editor")
    their_project = await insert_project(app, team.other_org, "secret")
    ws = await http.post(
        f"/api/v1/organizations/{team.other_org}/workspaces", json={"name": "x"}, headers=team.owner.headers
    )
    their_ws = ws.json()["id"]
    for url, body in ((ACTORS, {"name": "A"}), (CAMPAIGNS, {"name": "C"})):
        for field, value in (("project_id", their_project), ("workspace_id", their_ws)):
            refused = await http.post(url, json={**body, field: value}, headers=h)
            random = await http.post(url, json={**body, field: str(uuid.uuid4())}, headers=h)
            # A reference that names nothing here is a 404, as an id in the path.
            assert problem_field(refused, 404) == problem_field(random, 404) == field
            assert problem_message(refused) == problem_message(random)
        mine = await created(await http.post(url, json=body, headers=h))
        patched = await http.patch(f"{url}/{mine['id']}", json={"project_id": their_project}, headers=h)
        assert problem_field(patched, 404) == "project_id"

        theirs = await created(await http.post(url, json=body, headers=team.other))
        calls = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/archive"), ("GET", "/attack-layer")]
        for method, suffix in calls:
            kwargs: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
            crossed = await http.request(method, f"{url}/{theirs['id']}{suffix}", headers=h, **kwargs)
            random = await http.request(method, f"{url}/{uuid.uuid4()}{suffix}", headers=h, **kwargs)
            assert crossed.status_code == random.status_code == 404
            assert {**crossed.json(), "request_id": None} == {**random.json(), "request_id": None}
        assert [a["id"] for a in (await http.get(url, headers=h)).json()["items"]] == [mine["id"]]
        assert (await http.get(f"{url}/{theirs['id']}", headers=team.other)).json()["description"] == ""


# --- campaigns -------------------------------------------------------------------------------------------


async def test_campaign_crud_filters_and_archive(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h()
    body = await created(
        await http.post(
            CAMPAIGNS,
            json={
                "name": "Operation Ghost",
                "aliases": ["Ghost", "ghost"],
                "objective": "Long-term access to foreign ministries",
                "first_seen": "2013-01-01T00:00:00Z",
                "last_seen": "2019-10-01T00:00:00Z",
                "attack_techniques": ["T1071.001"],
            },
            headers=h,
        )
    )
    assert body["aliases"] == ["Ghost"] and body["stix_id"] == f"campaign--{body['id']}"
    assert body["objective"] == "Long-term access to foreign ministries"
    other = await created(await http.post(CAMPAIGNS, json={"name": "Night Dragon"}, headers=h))
    backwards = await http.post(
        CAMPAIGNS,
        json={"name": "Z", "first_seen": "2020-01-01T00:00:00Z", "last_seen": "2019-01-01T00:00:00Z"},
        headers=h,
    )
    assert problem_field(backwards) == "last_seen"
    nulled = await http.patch(f"{CAMPAIGNS}/{other['id']}", json={"objective": None}, headers=h)
    assert problem_field(nulled) == "objective"

    found = await http.get(CAMPAIGNS, params={"q": "GHOST"}, headers=h)
    assert [c["name"] for c in found.json()["items"]] == ["Operation Ghost"]
    by_name = await all_items(http, CAMPAIGNS, h, sort="name", limit=1)
    assert [c["name"] for c in by_name] == ["Night Dragon", "Operation Ghost"]

    url = f"{CAMPAIGNS}/{other['id']}"
    assert (await http.post(f"{url}/archive", headers=team.h("viewer"))).status_code == 403
    assert (await http.post(f"{url}/archive", headers=team.h("editor"))).status_code == 403
    assert (await http.post(f"{url}/archive", headers=h)).status_code == 200
    assert [c["name"] for c in (await http.get(CAMPAIGNS, headers=h)).json()["items"]] == ["Operation Ghost"]
    assert (await http.delete(url, headers=team.h("editor"))).status_code == 403
    assert (await http.delete(url, headers=team.h("admin"))).status_code == 204
    assert (await http.get(url, headers=h)).status_code == 404


# --- ATT&CK Navigator layers -----------------------------------------------------------------------------


def assert_layer_shape(doc: dict[str, Any]) -> None:
    """The layer-format 4.5 structure (required fields, types, value ranges) the Navigator needs."""
    assert doc["versions"] == {"attack": "18", "navigator": "5.1.0", "layer": "4.5"}
    assert doc["domain"] == "enterprise-attack"
    assert isinstance(doc["name"], str) and doc["name"]
    assert isinstance(doc["description"], str)
    gradient = doc["gradient"]
    assert len(gradient["colors"]) >= 2 and gradient["maxValue"] > gradient["minValue"]
    assert doc["legendItems"]
    for item in doc["legendItems"]:
        assert set(item) == {"label", "color"} and item["color"].startswith("#")
    allowed = {"techniqueID", "tactic", "color", "score", "comment", "enabled", "showSubtechniques"}
    for technique in doc["techniques"]:
        assert set(technique) <= allowed, technique
        assert {"techniqueID", "color", "score", "enabled"} <= set(technique)
        assert technique["enabled"] is True
        assert len(technique["color"]) == 7 and technique["color"].startswith("#")
        assert gradient["minValue"] <= technique["score"] <= gradient["maxValue"]


def test_navigator_layer_scores_and_colours() -> None:
    doc = layer("Pair", "two actors", ["T1566", "t1059.001", "T1566", "T1059.003", "T1105", " T1566 "])
    assert_layer_shape(doc)
    assert doc["name"] == "Pair" and doc["description"] == "two actors"
    by_id = {t["techniqueID"]: t for t in doc["techniques"]}
    assert list(by_id) == ["T1059", "T1059.001", "T1059.003", "T1105", "T1566"]
    # Scores count mentions; colours follow the gradient from 0 to the highest count.
    assert by_id["T1566"]["score"] == 3 and by_id["T1566"]["color"] == GRADIENT_HIGH
    assert by_id["T1566"]["comment"] == "listed 3 times"
    assert by_id["T1105"]["score"] == 1 and by_id["T1105"]["color"] == gradient_color(1, 3)
    assert by_id["T1105"]["color"] not in (GRADIENT_LOW, GRADIENT_HIGH)
    assert "comment" not in by_id["T1105"]
    assert doc["gradient"] == {"colors": [GRADIENT_LOW, GRADIENT_HIGH], "minValue": 0, "maxValue": 3}
    # A parent known only through its sub-techniques is added, grey, opened to show them.
    parent = by_id["T1059"]
    assert parent["score"] == 0 and parent["color"] == IMPLIED_COLOR and parent["showSubtechniques"] is True
    assert parent["comment"] == "sub-techniques listed: T1059.001, T1059.003"
    assert "showSubtechniques" not in by_id["T1059.001"]
    assert [item["color"] for item in doc["legendItems"]] == [GRADIENT_HIGH, IMPLIED_COLOR]


def test_navigator_layer_edges() -> None:
    empty = layer("Nothing", "", [])
    assert_layer_shape(empty)
    assert empty["techniques"] == [] and empty["gradient"]["maxValue"] == 1
    listed_parent = layer("P", "", ["T1059", "T1059.001"])
    parent = listed_parent["techniques"][0]
    assert parent["techniqueID"] == "T1059" and parent["score"] == 1 and parent["showSubtechniques"] is True
    assert parent["color"] == GRADIENT_HIGH
    assert [i["color"] for i in listed_parent["legendItems"]] == [GRADIENT_HIGH]
    assert gradient_color(0, 4) == GRADIENT_LOW and gradient_color(9, 4) == GRADIENT_HIGH
    assert gradient_color(2, 4) == "#e47c78"  # half way: (254+203)/2, (224+24)/2, (210+29)/2
    with pytest.raises(ValueError, match="not an ATT&CK technique id"):
        layer("bad", "", ["G0007"])
    with pytest.raises(ValueError, match="positive"):
        gradient_color(1, 0)


async def test_attack_layer_routes(http: httpx.AsyncClient, team: Team) -> None:
    editor = team.h("editor")
    actor = await created(
        await http.post(
            ACTORS, json={"name": "Lazarus", "attack_techniques": ["T1105", "T1059.003"]}, headers=editor
        )
    )
    campaign = await created(
        await http.post(
            CAMPAIGNS, json={"name": "Dream Job", "attack_techniques": ["T1566.002"]}, headers=editor
        )
    )
    doc = (await http.get(f"{ACTORS}/{actor['id']}/attack-layer", headers=team.h("viewer"))).json()
    assert_layer_shape(doc)
    assert doc["name"] == "Lazarus" and "threat actor Lazarus" in doc["description"]
    scored = [(t["techniqueID"], t["score"], t["color"]) for t in doc["techniques"]]
    assert scored == [
        ("T1059", 0, IMPLIED_COLOR),
        ("T1059.003", 1, GRADIENT_HIGH),
        ("T1105", 1, GRADIENT_HIGH),
    ]
    doc = (await http.get(f"{CAMPAIGNS}/{campaign['id']}/attack-layer", headers=team.h("viewer"))).json()
    assert_layer_shape(doc)
    assert doc["name"] == "Dream Job"
    assert [t["techniqueID"] for t in doc["techniques"]] == ["T1566", "T1566.002"]


# --- import from ATT&CK ----------------------------------------------------------------------------------


async def test_import_attack_group_once(http: httpx.AsyncClient, app: Any, team: Team) -> None:
    await load_attack_sample(app)
    try:
        await _import_checks(http, team)
    finally:
        await unload_attack(app)


async def _import_checks(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h()
    actor = await created(await http.post(f"{ACTORS}/from-attack/g0007", headers=team.h("editor")))
    assert actor["name"] == "APT28" and actor["attack_group_id"] == "G0007"
    assert "APT28" not in actor["aliases"] and "Sofacy" in actor["aliases"]
    assert "APT28" in actor["description"]
    assert actor["tlp"] == "clear" and actor["stix_id"].startswith("intrusion-set--")
    techniques = actor["attack_techniques"]
    assert len(techniques) > 20 and techniques == sorted(techniques) and "T1566.001" in techniques

    again = await http.post(f"{ACTORS}/from-attack/G0007", headers=h)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == actor["id"]
    assert len((await http.get(ACTORS, headers=h)).json()["items"]) == 1
    theirs = await created(await http.post(f"{ACTORS}/from-attack/G0007", headers=team.other))
    assert theirs["id"] != actor["id"]  # another org gets its own copy

    assert (await http.post(f"{ACTORS}/from-attack/G9999", headers=h)).status_code == 404
    assert problem_field(await http.post(f"{ACTORS}/from-attack/T1059", headers=h)) == "group_id"
    assert (await http.post(f"{ACTORS}/from-attack/G0016", headers=team.h("viewer"))).status_code == 403
    # A hand-made actor with the group's name is not silently taken over.
    await created(await http.post(ACTORS, json={"name": "apt29"}, headers=h))
    assert problem_field(await http.post(f"{ACTORS}/from-attack/G0016", headers=h), 409) == "name"
    # With a catalog loaded, techniques are checked against it.
    unknown = await http.post(ACTORS, json={"name": "N", "attack_techniques": ["T9999"]}, headers=h)
    assert problem_field(unknown) == "attack_techniques" and "T9999" in problem_message(unknown)
    doc = (await http.get(f"{ACTORS}/{actor['id']}/attack-layer", headers=h)).json()
    assert_layer_shape(doc)
    assert {t["techniqueID"] for t in doc["techniques"]} >= set(techniques)
