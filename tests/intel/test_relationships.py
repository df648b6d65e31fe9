"""Relationships (STIX pairs, dedupe, paging, who may delete) and the neighbourhood graph of an object."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from raptorflow.intel import objects
from raptorflow.intel.objects import ObjectKind
from raptorflow.intel.relationships import service as relationship_service
from raptorflow.kit.db import new_id
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import (
    Campaign,
    Indicator,
    Organization,
    Project,
    Relationship,
    Report,
    ThreatActor,
    Vulnerability,
)
from tests.conftest import Actor, add_member, create_org, sign_up

REL = "/api/v1/relationships"


def _obj_url(object_id: uuid.UUID, depth: int = 1) -> str:
    return f"/api/v1/objects/{object_id}/neighbours?depth={depth}"


async def seed(app: Any, org_id: str, *rows: Any) -> None:
    """Insert objects straight into the database as the org (other teams own their create APIs)."""
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org_id))
        session.add_all(rows)
        await session.commit()


async def foreign_org(app: Any, slug: str) -> str:
    """Another organization, inserted directly (its people do not matter to these tests)."""
    org = Organization(id=new_id(), name=slug.title(), slug=slug)
    async with app.state.session_factory() as session:
        session.add(org)
        await session.commit()
    return str(org.id)


async def viewer_key(client: httpx.AsyncClient, owner: Actor, org_id: str) -> dict[str, str]:
    """Headers of a viewer-role API key of the org (cheaper than signing up a viewer)."""
    created = await client.post(
        f"/api/v1/organizations/{org_id}/api-keys",
        json={"name": "viewer", "role": "viewer"},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["secret"]}


async def count_relationships(app: Any, org_id: str) -> int:
    """Relationships stored for an org."""
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org_id))
        stmt = select(func.count()).select_from(Relationship).where(Relationship.org_id == uuid.UUID(org_id))
        return int(await session.scalar(stmt) or 0)


def indicator(org_id: str, value: str) -> Indicator:
    """An indicator row with every NOT NULL column set."""
    now = datetime.now(UTC)
    return Indicator(
        id=new_id(), org_id=uuid.UUID(org_id), type="domain", value=value, first_seen=now, last_seen=now
    )


def actor(org_id: str, name: str) -> ThreatActor:
    """A threat-actor row."""
    return ThreatActor(id=new_id(), org_id=uuid.UUID(org_id), name=name)


def campaign(org_id: str, name: str) -> Campaign:
    """A campaign row."""
    return Campaign(id=new_id(), org_id=uuid.UUID(org_id), name=name)


def vulnerability(org_id: str, cve: str) -> Vulnerability:
    """A vulnerability row."""
    return Vulnerability(id=new_id(), org_id=uuid.UUID(org_id), cve_id=cve)


def report(org_id: str, title: str, refs: list[Any]) -> Report:
    """A report row referencing objects."""
    return Report(id=new_id(), org_id=uuid.UUID(org_id), title=title, object_refs=refs)


async def relate(
    client: httpx.AsyncClient, who: Actor, org: str, source: Any, target: Any, kind: str, **extra: Any
) -> httpx.Response:
    """POST a relationship."""
    body = {"source_id": str(source), "target_id": str(target), "relationship_type": kind, **extra}
    return await client.post(REL, json=body, headers=who.in_org(org))


@pytest.fixture
async def owned(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and the org id (sign-ups are the slow part of these tests: as few as possible)."""
    owner = await sign_up(client, "owner@example.com")
    return owner, await create_org(owner, "graph")


async def test_create_dedupe_list_get_patch_delete(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    owner, org = owned
    editor = await sign_up(client, "editor@example.com")
    await add_member(owner, org, editor, "editor")
    ind, act, camp = indicator(org, "evil.example"), actor(org, "APT-X"), campaign(org, "Op Y")
    await seed(app, org, ind, act, camp)

    created = await relate(client, editor, org, ind.id, act.id, "indicates", confidence=70)
    assert created.status_code == 201, created.text
    rel = created.json()
    assert created.headers["location"] == f"{REL}/{rel['id']}"
    assert (rel["source_type"], rel["target_type"]) == ("indicator", "threat-actor")
    assert rel["stix_id"] == f"relationship--{rel['id']}"
    assert rel["confidence"] == 70 and rel["created_by"] == editor.user_id

    again = await relate(client, owner, org, ind.id, act.id, "indicates", description="other")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == rel["id"] and again.json()["description"] == ""
    assert await count_relationships(app, org) == 1

    by_owner = await relate(client, owner, org, camp.id, act.id, "attributed-to")
    assert by_owner.status_code == 201, by_owner.text
    other = await relate(client, editor, org, ind.id, camp.id, "indicates")
    assert other.status_code == 201, other.text

    headers = editor.in_org(org)
    touching = (await client.get(REL, params={"object_id": str(act.id)}, headers=headers)).json()
    assert {r["id"] for r in touching["items"]} == {rel["id"], by_owner.json()["id"]}
    typed = (await client.get(REL, params={"relationship_type": "attributed-to"}, headers=headers)).json()
    assert [r["id"] for r in typed["items"]] == [by_owner.json()["id"]]
    first = (await client.get(REL, params={"limit": 2}, headers=headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = (
        await client.get(REL, params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    seen = [r["id"] for r in first["items"] + rest["items"]]
    assert sorted(seen) == sorted([rel["id"], by_owner.json()["id"], other.json()["id"]])

    got = await client.get(f"{REL}/{rel['id']}", headers=headers)
    assert got.status_code == 200 and got.json()["id"] == rel["id"]

    patched = await client.patch(
        f"{REL}/{rel['id']}", json={"description": "seen in the wild", "confidence": 90}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "seen in the wild" and patched.json()["confidence"] == 90
    cleared = await client.patch(f"{REL}/{rel['id']}", json={"confidence": None}, headers=headers)
    assert cleared.json()["confidence"] is None and cleared.json()["description"] == "seen in the wild"
    for bad in ({"confidence": 101}, {"relationship_type": "uses"}, {"description": None}):
        assert (await client.patch(f"{REL}/{rel['id']}", json=bad, headers=headers)).status_code == 422

    # Editors delete only what they created; admins (the owner) anything.
    refused = await client.delete(f"{REL}/{by_owner.json()['id']}", headers=headers)
    assert refused.status_code == 403
    assert (await client.delete(f"{REL}/{rel['id']}", headers=headers)).status_code == 204
    assert (await client.delete(f"{REL}/{other.json()['id']}", headers=owner.in_org(org))).status_code == 204
    assert (await client.get(f"{REL}/{rel['id']}", headers=headers)).status_code == 404
    assert (await client.delete(f"{REL}/{rel['id']}", headers=headers)).status_code == 404
    assert await count_relationships(app, org) == 1


async def test_invalid_pair_lists_what_is_allowed(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    editor, org = owned
    ind, ind2, act = indicator(org, "a.example"), indicator(org, "b.example"), actor(org, "APT-1")
    camp, vuln = campaign(org, "C"), vulnerability(org, "CVE-2024-3400")
    await seed(app, org, ind, ind2, act, camp, vuln)

    backwards = await relate(client, editor, org, act.id, ind.id, "indicates")
    assert backwards.status_code == 422, backwards.text
    problem = backwards.json()
    assert problem["errors"][0]["field"] == "relationship_type"
    assert problem["allowed"] == ["related-to"]
    assert "threat-actor to indicator" in problem["detail"]

    wrong = await relate(client, editor, org, ind.id, act.id, "derived-from")
    assert wrong.status_code == 422
    assert wrong.json()["allowed"] == ["indicates", "related-to"]
    from_vuln = await relate(client, editor, org, vuln.id, camp.id, "targets")
    assert from_vuln.status_code == 422 and from_vuln.json()["allowed"] == ["related-to"]

    for source, target, kind in (
        (camp.id, vuln.id, "targets"),
        (act.id, vuln.id, "targets"),
        (ind.id, ind2.id, "duplicate-of"),
        (vuln.id, ind.id, "related-to"),
    ):
        response = await relate(client, editor, org, source, target, kind)
        assert response.status_code == 201, (kind, response.text)
    self_loop = await relate(client, editor, org, ind.id, ind.id, "related-to")
    assert self_loop.status_code == 422 and self_loop.json()["errors"][0]["field"] == "target_id"
    shape = await relate(client, editor, org, ind.id, act.id, "Not A Type")
    assert shape.status_code == 422


async def test_objects_of_another_org_are_unknown(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    editor, org = owned
    org_b = await foreign_org(app, "other")
    mine, theirs, their_actor = indicator(org, "mine.example"), indicator(org_b, "theirs"), actor(org_b, "B")
    their_rel = Relationship(
        id=new_id(),
        org_id=uuid.UUID(org_b),
        source_type="indicator",
        source_id=theirs.id,
        target_type="threat-actor",
        target_id=their_actor.id,
        relationship_type="indicates",
        confidence=40,
    )
    await seed(app, org, mine)
    await seed(app, org_b, theirs, their_actor)
    await seed(app, org_b, their_rel)

    foreign_source = await relate(client, editor, org, theirs.id, mine.id, "related-to")
    random_source = await relate(client, editor, org, uuid.uuid4(), mine.id, "related-to")
    assert (
        foreign_source.status_code == random_source.status_code == 404
    )  # a referenced object that is not here: 404, as a path id
    assert foreign_source.json()["errors"] == random_source.json()["errors"]
    assert foreign_source.json()["errors"][0]["field"] == "source_id"
    foreign_target = await relate(client, editor, org, mine.id, their_actor.id, "related-to")
    assert foreign_target.status_code == 404 and foreign_target.json()["errors"][0]["field"] == "target_id"

    rel_id = str(their_rel.id)
    headers = editor.in_org(org)
    assert (await client.get(f"{REL}/{rel_id}", headers=headers)).status_code == 404
    assert (await client.patch(f"{REL}/{rel_id}", json={"confidence": 1}, headers=headers)).status_code == 404
    assert (await client.delete(f"{REL}/{rel_id}", headers=headers)).status_code == 404
    listed = await client.get(REL, params={"object_id": str(theirs.id)}, headers=headers)
    assert listed.json()["items"] == []
    foreign_graph = await client.get(_obj_url(theirs.id), headers=headers)
    random_graph = await client.get(_obj_url(uuid.uuid4()), headers=headers)
    assert foreign_graph.status_code == random_graph.status_code == 404
    assert foreign_graph.json()["detail"] == random_graph.json()["detail"]

    assert await count_relationships(app, org) == 0
    assert await count_relationships(app, org_b) == 1
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org_b))
        untouched = await session.get(Relationship, their_rel.id)
        assert untouched is not None and untouched.confidence == 40


async def test_neighbours_depth_one_and_two(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    editor, org = owned
    org_b = await foreign_org(app, "outside")
    foreign = indicator(org_b, "foreign.example")
    await seed(app, org_b, foreign)
    ind, act = indicator(org, "c2.example"), actor(org, "APT-29")
    camp, vuln = campaign(org, "Op Z"), vulnerability(org, "CVE-2023-23397")
    # A report references the indicator (object form), the actor (STIX-id form) and another org's id.
    rep = report(
        org,
        "Weekly brief",
        [
            {"type": "indicator", "id": str(ind.id)},
            f"threat-actor--{act.id}",
            {"type": "x", "id": str(foreign.id)},
        ],
    )
    await seed(app, org, ind, act, camp, vuln, rep)
    for source, target, kind in (
        (ind.id, act.id, "indicates"),
        (camp.id, act.id, "attributed-to"),
        (camp.id, vuln.id, "targets"),
    ):
        assert (await relate(client, editor, org, source, target, kind)).status_code == 201

    async def graph(object_id: uuid.UUID, depth: int) -> dict[str, Any]:
        response = await client.get(_obj_url(object_id, depth), headers=editor.in_org(org))
        assert response.status_code == 200, response.text
        return dict(response.json())

    one = await graph(ind.id, 1)
    assert one["truncated"] is False
    labels = {n["id"]: (n["kind"], n["label"]) for n in one["nodes"]}
    assert labels == {
        str(ind.id): ("indicator", "c2.example"),
        str(act.id): ("threat-actor", "APT-29"),
        str(rep.id): ("report", "Weekly brief"),
    }
    edges = {(e["source"], e["target"], e["relationship_type"]) for e in one["edges"]}
    assert edges == {
        (str(ind.id), str(act.id), "indicates"),
        (str(rep.id), str(ind.id), "object-ref"),
        (str(rep.id), str(act.id), "object-ref"),
    }
    assert all((e["id"] is None) == (e["relationship_type"] == "object-ref") for e in one["edges"])

    two = await graph(ind.id, 2)
    assert {n["id"] for n in two["nodes"]} == {str(ind.id), str(act.id), str(rep.id), str(camp.id)}
    assert (str(camp.id), str(act.id), "attributed-to") in {
        (e["source"], e["target"], e["relationship_type"]) for e in two["edges"]
    }
    assert str(vuln.id) not in {n["id"] for n in two["nodes"]}

    around_actor = await graph(act.id, 1)
    assert {n["id"] for n in around_actor["nodes"]} == {str(act.id), str(ind.id), str(camp.id), str(rep.id)}
    from_vuln = await graph(vuln.id, 2)
    assert {n["kind"] for n in from_vuln["nodes"]} == {"vulnerability", "campaign", "threat-actor"}
    from_report = await graph(rep.id, 1)
    assert {n["id"] for n in from_report["nodes"]} == {str(rep.id), str(ind.id), str(act.id)}
    assert str(foreign.id) not in str(from_report)

    too_deep = await client.get(_obj_url(ind.id, 3), headers=editor.in_org(org))
    assert too_deep.status_code == 422


async def test_neighbours_are_capped(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    editor, org = owned
    act = actor(org, "Hub")
    spokes = [indicator(org, f"spoke{i}.example") for i in range(6)]
    await seed(app, org, act, *spokes)
    for spoke in spokes:
        assert (await relate(client, editor, org, spoke.id, act.id, "indicates")).status_code == 201

    full = (await client.get(_obj_url(act.id), headers=editor.in_org(org))).json()
    assert full["truncated"] is False and len(full["nodes"]) == 7 and len(full["edges"]) == 6

    monkeypatch.setattr(relationship_service, "MAX_NODES", 4)
    cut = (await client.get(_obj_url(act.id), headers=editor.in_org(org))).json()
    assert cut["truncated"] is True
    assert len(cut["nodes"]) == 4 and str(act.id) in {n["id"] for n in cut["nodes"]}
    kept = {n["id"] for n in cut["nodes"]}
    assert len(cut["edges"]) == 3
    assert all(e["source"] in kept and e["target"] in kept for e in cut["edges"])

    monkeypatch.setattr(relationship_service, "MAX_NODES", 500)
    monkeypatch.setattr(relationship_service, "MAX_EDGES_PER_HOP", 2)
    few_edges = (await client.get(_obj_url(act.id), headers=editor.in_org(org))).json()
    assert few_edges["truncated"] is True and len(few_edges["edges"]) == 2


async def test_viewer_reads_but_cannot_write(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    owner, org = owned
    headers = await viewer_key(client, owner, org)
    ind, act = indicator(org, "v.example"), actor(org, "V")
    await seed(app, org, ind, act)
    rel = await relate(client, owner, org, ind.id, act.id, "indicates")
    rel_id = rel.json()["id"]

    body = {"source_id": str(act.id), "target_id": str(ind.id), "relationship_type": "related-to"}
    assert (await client.post(REL, json=body, headers=headers)).status_code == 403
    assert (await client.patch(f"{REL}/{rel_id}", json={"confidence": 5}, headers=headers)).status_code == 403
    assert (await client.delete(f"{REL}/{rel_id}", headers=headers)).status_code == 403
    assert (await client.get(f"{REL}/{rel_id}", headers=headers)).json()["confidence"] is None
    assert (await client.get(REL, headers=headers)).status_code == 200
    assert (await client.get(_obj_url(ind.id), headers=headers)).status_code == 200
    assert await count_relationships(app, org) == 1


async def test_detach_objects_removes_their_relationships_only(client: httpx.AsyncClient, app: Any) -> None:
    org = await foreign_org(app, "detach")
    other_org = await foreign_org(app, "keep")
    gone, kept, hub = indicator(org, "gone.example"), indicator(org, "kept.example"), actor(org, "Hub")
    far, far_hub = indicator(other_org, "gone.example"), actor(other_org, "Hub")

    def edge(org_id: str, source: Indicator, target: ThreatActor) -> Relationship:
        return Relationship(
            id=new_id(),
            org_id=uuid.UUID(org_id),
            source_type="indicator",
            source_id=source.id,
            target_type="threat-actor",
            target_id=target.id,
            relationship_type="indicates",
        )

    await seed(app, org, gone, kept, hub)
    await seed(app, org, edge(org, gone, hub), edge(org, kept, hub))
    await seed(app, other_org, far, far_hub)
    await seed(app, other_org, edge(other_org, far, far_hub))
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org))
        # Another org's object id does nothing here, even when asked for.
        removed = await relationship_service.detach_objects(session, uuid.UUID(org), {gone.id, far.id})
        await session.commit()
    assert removed == 1
    assert await count_relationships(app, org) == 1
    assert await count_relationships(app, other_org) == 1


async def test_resolver_finds_every_kind_of_the_org_only(client: httpx.AsyncClient, app: Any) -> None:
    org = await foreign_org(app, "resolve")
    other_org = await foreign_org(app, "unrelated")
    rows = {
        ObjectKind.indicator: indicator(org, "r.example"),
        ObjectKind.threat_actor: actor(org, "R"),
        ObjectKind.campaign: campaign(org, "R"),
        ObjectKind.vulnerability: vulnerability(org, "CVE-2021-44228"),
        ObjectKind.report: report(org, "R", []),
        ObjectKind.project: Project(id=new_id(), org_id=uuid.UUID(org), name="R"),
    }
    elsewhere = actor(other_org, "R")
    await seed(app, org, *rows.values())
    await seed(app, other_org, elsewhere)
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org))
        for kind, row in rows.items():
            found = await objects.resolve_object(session, uuid.UUID(org), row.id)
            assert found is not None and found.kind == kind and found.row.id == row.id
        assert await objects.resolve_object(session, uuid.UUID(org), elsewhere.id) is None
        assert await objects.resolve_object(session, uuid.UUID(org), uuid.uuid4()) is None
        graph_only = await objects.kinds_of(
            session, uuid.UUID(org), [r.id for r in rows.values()], objects.GRAPH_KINDS
        )
        assert set(graph_only.values()) == set(objects.GRAPH_KINDS)
