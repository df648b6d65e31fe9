"""Sightings: they refresh the indicator set-based (last_seen, sightings_count), bounded times and counts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raptorflow.kit.db import new_id
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Indicator, Sighting
from tests.conftest import Actor, add_member, create_org, sign_up
from tests.intel.test_relationships import foreign_org, indicator, seed, viewer_key

SIGHTINGS = "/api/v1/sightings"


def sightings_of(indicator_id: Any) -> str:
    """The sightings collection of an indicator."""
    return f"/api/v1/indicators/{indicator_id}/sightings"


def at(text: str) -> datetime:
    """An RFC 3339 timestamp from a response."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def stored(app: Any, org_id: str, indicator_id: uuid.UUID) -> Indicator:
    """The indicator as the database holds it now."""
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org_id))
        row = await session.get(Indicator, indicator_id)
        assert row is not None
        return row


def aged(org_id: str, value: str, days: int) -> Indicator:
    """An indicator last seen `days` ago, never sighted."""
    row = indicator(org_id, value)
    row.first_seen = row.last_seen = datetime.now(UTC) - timedelta(days=days)
    return row


@pytest.fixture
async def owned(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and the org id."""
    owner = await sign_up(client, "owner@example.com")
    return owner, await create_org(owner, "sightings")


async def test_sightings_refresh_the_indicator(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    owner, org = owned
    ind = aged(org, "seen.example", days=10)
    await seed(app, org, ind)
    headers = owner.in_org(org)
    now = datetime.now(UTC)

    two_days = now - timedelta(days=2)
    first = await client.post(
        sightings_of(ind.id),
        json={
            "count": 3,
            "first_seen": (two_days - timedelta(hours=1)).isoformat(),
            "last_seen": two_days.isoformat(),
            "where": "proxy-eu-1",
            "source": "siem",
            "note": "blocked",
        },
        headers=headers,
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert first.headers["location"] == f"{SIGHTINGS}/{body['id']}"
    assert body["indicator_id"] == str(ind.id) and body["count"] == 3 and body["where"] == "proxy-eu-1"
    assert body["stix_id"] == f"sighting--{body['id']}" and body["created_by"] == owner.user_id
    row = await stored(app, org, ind.id)
    assert row.sightings_count == 3
    assert abs(row.last_seen - two_days) < timedelta(milliseconds=1)

    # An older sighting adds its count but does not move last_seen back.
    older = await client.post(
        sightings_of(ind.id),
        json={"count": 2, "last_seen": (now - timedelta(days=5)).isoformat()},
        headers=headers,
    )
    assert older.status_code == 201, older.text
    assert at(older.json()["first_seen"]) == at(older.json()["last_seen"])
    row = await stored(app, org, ind.id)
    assert row.sightings_count == 5
    assert abs(row.last_seen - two_days) < timedelta(milliseconds=1)

    # No times given: seen now.
    latest = await client.post(sightings_of(ind.id), json={}, headers=headers)
    assert latest.status_code == 201 and latest.json()["count"] == 1
    row = await stored(app, org, ind.id)
    assert row.sightings_count == 6 and row.last_seen >= now - timedelta(seconds=1)
    assert at(latest.json()["last_seen"]) == row.last_seen

    page = (await client.get(sightings_of(ind.id), params={"limit": 2}, headers=headers)).json()
    assert [s["id"] for s in page["items"]] == [latest.json()["id"], older.json()["id"]]
    rest = (
        await client.get(
            sightings_of(ind.id), params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
        )
    ).json()
    assert [s["id"] for s in rest["items"]] == [body["id"]] and rest["next_cursor"] is None
    got = await client.get(f"{SIGHTINGS}/{body['id']}", headers=headers)
    assert got.status_code == 200 and got.json() == body

    assert (await client.delete(f"{SIGHTINGS}/{body['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"{SIGHTINGS}/{body['id']}", headers=headers)).status_code == 404
    assert (await stored(app, org, ind.id)).sightings_count == 3
    assert (await client.get(sightings_of(uuid.uuid4()), headers=headers)).status_code == 404
    assert (await client.post(sightings_of(uuid.uuid4()), json={}, headers=headers)).status_code == 404


async def test_times_and_counts_are_bounded(
    client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    owner, org = owned
    ind = aged(org, "bounded.example", days=3)
    await seed(app, org, ind)
    before = await stored(app, org, ind.id)
    now = datetime.now(UTC)

    async def post(**body: Any) -> httpx.Response:
        return await client.post(sightings_of(ind.id), json=body, headers=owner.in_org(org))

    future = await post(last_seen=(now + timedelta(hours=1)).isoformat())
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "last_seen"
    future_start = await post(first_seen=(now + timedelta(hours=1)).isoformat())
    assert future_start.status_code == 422 and future_start.json()["errors"][0]["field"] == "first_seen"
    backwards = await post(
        first_seen=(now - timedelta(hours=1)).isoformat(), last_seen=(now - timedelta(hours=2)).isoformat()
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "last_seen"
    for bad in (
        {"count": 0},
        {"count": 1_000_001},
        {"last_seen": "2024-01-01T00:00:00"},  # no zone
        {"org_id": org},
        {"where": "x" * 501},
    ):
        assert (await post(**bad)).status_code == 422, bad
    after = await stored(app, org, ind.id)
    assert (after.sightings_count, after.last_seen) == (before.sightings_count, before.last_seen)

    # Within the clock-skew allowance: accepted, and it becomes the indicator's last_seen.
    skewed = now + timedelta(minutes=2)
    ok = await post(count=1_000_000, last_seen=skewed.isoformat())
    assert ok.status_code == 201, ok.text
    row = await stored(app, org, ind.id)
    assert row.sightings_count == 1_000_000
    assert abs(row.last_seen - skewed) < timedelta(milliseconds=1)


@pytest.fixture
def postgres_only(database_url: str) -> None:
    """Skip on SQLite, before any slower fixture runs."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serializes writers; the race this guards against needs concurrent writers")


async def test_concurrent_sightings_lose_no_count(
    postgres_only: None, client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]
) -> None:
    owner, org = owned
    ind = aged(org, "busy.example", days=1)
    await seed(app, org, ind)
    responses = await asyncio.gather(
        *(
            client.post(sightings_of(ind.id), json={"count": n}, headers=owner.in_org(org))
            for n in range(1, 11)
        )
    )
    assert [r.status_code for r in responses] == [201] * 10
    assert (await stored(app, org, ind.id)).sightings_count == sum(range(1, 11))


async def test_roles_and_other_orgs(client: httpx.AsyncClient, app: Any, owned: tuple[Actor, str]) -> None:
    owner, org = owned
    editor = await sign_up(client, "editor@example.com")
    await add_member(owner, org, editor, "editor")
    viewer_headers = await viewer_key(client, owner, org)
    ind = aged(org, "roles.example", days=1)
    org_b = await foreign_org(app, "elsewhere")
    theirs = aged(org_b, "theirs.example", days=1)
    await seed(app, org, ind)
    await seed(app, org_b, theirs)

    by_owner = await client.post(sightings_of(ind.id), json={"count": 4}, headers=owner.in_org(org))
    by_editor = await client.post(sightings_of(ind.id), json={"count": 1}, headers=editor.in_org(org))
    assert by_owner.status_code == by_editor.status_code == 201
    owner_sighting, editor_sighting = by_owner.json()["id"], by_editor.json()["id"]

    assert (await client.post(sightings_of(ind.id), json={}, headers=viewer_headers)).status_code == 403
    assert (await client.delete(f"{SIGHTINGS}/{editor_sighting}", headers=viewer_headers)).status_code == 403
    listed = await client.get(sightings_of(ind.id), headers=viewer_headers)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 2
    # Editors delete their own sightings only.
    editor_headers = editor.in_org(org)
    assert (await client.delete(f"{SIGHTINGS}/{owner_sighting}", headers=editor_headers)).status_code == 403
    assert (await client.delete(f"{SIGHTINGS}/{editor_sighting}", headers=editor_headers)).status_code == 204
    assert (await stored(app, org, ind.id)).sightings_count == 4

    # Another org's indicator answers like a random id, and stays untouched.
    for target in (theirs.id, uuid.uuid4()):
        posted = await client.post(sightings_of(target), json={}, headers=owner.in_org(org))
        listed = await client.get(sightings_of(target), headers=owner.in_org(org))
        assert posted.status_code == listed.status_code == 404
    assert (await stored(app, org_b, theirs.id)).sightings_count == 0
    their_sighting = Sighting(
        id=new_id(),
        org_id=theirs.org_id,
        indicator_id=theirs.id,
        first_seen=theirs.last_seen,
        last_seen=theirs.last_seen,
    )
    await seed(app, org_b, their_sighting)
    for method in ("GET", "DELETE"):
        foreign = await client.request(method, f"{SIGHTINGS}/{their_sighting.id}", headers=owner.in_org(org))
        random = await client.request(method, f"{SIGHTINGS}/{uuid.uuid4()}", headers=owner.in_org(org))
        assert foreign.status_code == random.status_code == 404
        assert foreign.json()["detail"] == random.json()["detail"]
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org_b))
        assert await session.get(Sighting, their_sighting.id) is not None
