"""Lookups: single and batch, refanged and normalized, expiry, false positives, related actors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert

from raptorflow.intel.lookup import service as lookup_service
from raptorflow.intel.lookup.service import LookupService
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Campaign, Relationship, ThreatActor
from tests.conftest import create_org, sign_up


async def test_single_and_batch_lookup(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "look@example.com")
    org = await create_org(owner, "look")
    h = owner.in_org(org)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    older = (datetime.now(UTC) - timedelta(days=9)).isoformat()
    items = [
        {"value": "evil.example.com", "score": 90, "classification": "malicious", "tags": ["c2"]},
        {"value": "198.51.100.1", "score": 70},
        {"value": "old.example.com", "valid_from": older, "valid_until": past},
    ]
    created = (await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=h)).json()
    evil_id = created["results"][0]["id"]
    # Link an actor to the domain, the way the relationships API will.
    async with app.state.session_factory() as session:
        actor_id = new_id()
        await bind_org(session, uuid.UUID(org))
        await session.execute(
            insert(ThreatActor).values(
                id=actor_id,
                org_id=uuid.UUID(org),
                name="APT Example",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        await session.execute(
            insert(Relationship).values(
                id=new_id(),
                org_id=uuid.UUID(org),
                source_type="indicator",
                source_id=uuid.UUID(evil_id),
                target_type="threat-actor",
                target_id=actor_id,
                relationship_type="indicates",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        await session.commit()
    one = (
        await client.get("/api/v1/lookup", params={"value": "hxxp://EVIL[.]example[.]com"}, headers=h)
    ).json()
    assert one["found"] is False  # a URL is not the domain
    dom = (await client.get("/api/v1/lookup", params={"value": "EVIL[.]example[.]com"}, headers=h)).json()
    assert dom["found"] is True and dom["type"] == "domain" and dom["normalized"] == "evil.example.com"
    match = dom["matches"][0]
    assert match["effective_score"] == 90 and match["tags"] == ["c2"]
    assert match["related"]["actors"] == [
        {"id": str(actor_id), "name": "APT Example", "relationship_type": "indicates"}
    ]
    unknown = await client.get("/api/v1/lookup", params={"value": "203.0.113.99"}, headers=h)
    assert unknown.status_code == 200 and unknown.json()["found"] is False
    batch = (
        await client.post(
            "/api/v1/lookup",
            json={"values": ["198.51.100[.]1", "nope.example", "old.example.com", "???", "evil.example.com"]},
            headers=h,
        )
    ).json()["results"]
    assert [r["found"] for r in batch] == [True, False, False, False, True]
    assert batch[3]["error"]
    with_expired = (
        await client.post(
            "/api/v1/lookup", json={"values": ["old.example.com"], "include_expired": True}, headers=h
        )
    ).json()["results"][0]
    assert with_expired["found"] is True and with_expired["matches"][0]["expired"] is True
    other = await sign_up(client, "look2@example.com")
    other_org = await create_org(other, "look2")
    hidden = (
        await client.get(
            "/api/v1/lookup", params={"value": "evil.example.com"}, headers=other.in_org(other_org)
        )
    ).json()
    assert hidden["found"] is False
    big = await client.post(
        "/api/v1/lookup", json={"values": [f"10.0.{i // 256}.{i % 256}" for i in range(10_000)]}, headers=h
    )
    assert big.status_code == 200 and len(big.json()["results"]) == 10_000


async def test_related_objects_either_direction_single_and_batch(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "look-rel@example.com")
    org = await create_org(owner, "look-rel")
    h = owner.in_org(org)
    made = (
        await client.post(
            "/api/v1/indicators/bulk",
            json={"items": [{"value": "rel.example.net"}, {"value": "lone.example.net"}]},
            headers=h,
        )
    ).json()
    rel_id = uuid.UUID(made["results"][0]["id"])
    campaign_id, actor_id = new_id(), new_id()
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org))
        now = utcnow()
        await session.execute(
            insert(ThreatActor).values(
                id=actor_id, org_id=uuid.UUID(org), name="Actor B", created_at=now, updated_at=now
            )
        )
        await session.execute(
            insert(Campaign).values(
                id=campaign_id, org_id=uuid.UUID(org), name="Op Rel", created_at=now, updated_at=now
            )
        )
        for source_type, source_id, target_type, target_id, rel in (
            ("campaign", campaign_id, "indicator", rel_id, "uses"),  # the indicator is the target here
            ("indicator", rel_id, "threat-actor", actor_id, "indicates"),
        ):
            await session.execute(
                insert(Relationship).values(
                    id=new_id(),
                    org_id=uuid.UUID(org),
                    source_type=source_type,
                    source_id=source_id,
                    target_type=target_type,
                    target_id=target_id,
                    relationship_type=rel,
                    created_at=now,
                    updated_at=now,
                )
            )
        await session.commit()
    expected = {
        "actors": [{"id": str(actor_id), "name": "Actor B", "relationship_type": "indicates"}],
        "campaigns": [{"id": str(campaign_id), "name": "Op Rel", "relationship_type": "uses"}],
    }
    one = (await client.get("/api/v1/lookup", params={"value": "rel.example.net"}, headers=h)).json()
    assert one["matches"][0]["related"] == expected
    batch = (
        await client.post(
            "/api/v1/lookup", json={"values": ["lone.example.net", "rel.example.net"]}, headers=h
        )
    ).json()["results"]
    assert batch[0]["matches"][0]["related"] == {"actors": [], "campaigns": []}
    assert batch[1]["matches"][0]["related"] == expected


async def test_a_lookup_leaves_no_org_bound_on_its_connection(client: httpx.AsyncClient, app: Any) -> None:
    """The PostgreSQL lookup binds its org for one statement only: pooled connections carry nothing over."""
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite has no session settings or row-level security: nothing can stay bound")
    pool = app.state.direct_pool
    assert pool is not None, "PostgreSQL lookups go through the direct pool"
    owner = await sign_up(client, "look-bound@example.com")
    org = await create_org(owner, "look-bound")
    h = owner.in_org(org)
    await client.post("/api/v1/indicators", json={"value": "bound.example.net"}, headers=h)
    for _ in range(3):
        found = (await client.get("/api/v1/lookup", params={"value": "bound.example.net"}, headers=h)).json()
        assert found["found"] is True
    settings = {
        row[0]
        for _ in range(pool.max_size)
        for row in await pool.fetch("SELECT current_setting('app.org_id', true)")
    }
    assert settings <= {"", None}
    visible = await pool.fetch("SELECT count(*) FROM indicators")
    assert visible[0][0] == 0  # as the app role with no org bound, row-level security shows nothing


class _RenderingPool:
    """Stands in for the direct pool under a batch: answers raptorflow_lookup_json's row (positions of
    the keys it "finds", their matches joined by newlines) for values starting with "hit", and fails
    the statement that carries `fail`."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.statements: list[list[str]] = []

    async def fetch(self, _sql: str, _org: uuid.UUID, types: list[str], values: list[str], *_: Any) -> Any:
        self.statements.append(values)
        await asyncio.sleep(0.01 * len(self.statements))  # later statements finish later
        if self.fail in values:
            raise RuntimeError("statement failed")
        found = [i for i, value in enumerate(values) if value.startswith("hit")]
        if not found:
            return [(None, None)]
        return [(found, "\n".join(f'[{{"value":"{values[i]}","type":"{types[i]}"}}]' for i in found))]


async def test_batch_chunks_map_matches_back_to_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """Positions from several statements land on the right answers, repeats included, order kept."""
    monkeypatch.setattr(lookup_service, "FIRST_CHUNK", 2)
    monkeypatch.setattr(lookup_service, "PART_MIN", 1)
    pool = _RenderingPool()
    values = [
        "hit1.example",
        "miss.example",
        "???",
        "HIT1.example",
        "hit2.example",
        "hit3.example",
        "x.example",
    ]
    answers = await LookupService.on_pool(pool, uuid.uuid4()).lookup(values)
    assert len(pool.statements) == 3  # the first 2 keys, then the other 4 in LAST_PARTS = 2 parts
    assert sorted(v for s in pool.statements for v in s) == sorted(
        ["hit1.example", "miss.example", "hit2.example", "hit3.example", "x.example"]
    )
    assert [a["value"] for a in answers] == values
    assert [a["found"] for a in answers] == [True, False, False, True, True, True, False]
    for answer in answers:
        expected = [{"value": answer["normalized"], "type": "domain"}] if answer["found"] else []
        assert orjson.loads(orjson.dumps(answer["matches"])) == expected
    assert answers[2]["error"] and answers[2]["type"] is None


async def test_a_failed_batch_statement_fails_the_batch_and_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lookup_service, "FIRST_CHUNK", 2)
    monkeypatch.setattr(lookup_service, "PART_MIN", 1)
    pool = _RenderingPool(fail="hit2.example")
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="statement failed"):
        await LookupService.on_pool(pool, uuid.uuid4()).lookup(
            ["hit1.example", "a.example", "hit2.example", "b.example", "hit3.example"]
        )
    assert asyncio.all_tasks() <= before  # every statement had finished before the error came out
