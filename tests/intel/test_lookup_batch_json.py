"""Batches are rendered by PostgreSQL (raptorflow_lookup_json), single values in Python: same answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, update

from raptorflow.intel.lookup import service as lookup_service
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Campaign, Indicator, Relationship, ThreatActor
from tests.conftest import create_org, sign_up


async def test_batch_answers_equal_single_answers(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if app.state.settings.is_sqlite:
        pytest.skip("SQLite answers batches in Python, as single values: nothing to compare")
    # Chunks of 3 keys: a batch of 10 goes to PostgreSQL as four statements in flight at once.
    monkeypatch.setattr(lookup_service, "RENDER_CHUNK", 3)
    owner = await sign_up(client, "batch-json@example.com")
    org = await create_org(owner, "batch-json")
    h = owner.in_org(org)
    # The org's own half-lives: IPv4 a week, domains never (null); URLs keep the default (90 days).
    scoring = await client.put(
        "/api/v1/indicators/scoring", json={"half_life_days": {"ipv4": 7, "domain": None}}, headers=h
    )
    assert scoring.status_code == 200, scoring.text
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    older = (datetime.now(UTC) - timedelta(days=9)).isoformat()
    items = [
        {"value": "198.51.100.7", "score": 80, "tags": ["scan", "tor"], "classification": "malicious"},
        {"value": "decays.example.org", "score": 64},
        {"value": "http://drop.example.net/a.bin", "score": 77, "valid_until": soon, "tlp": "red"},
        {"value": "d41d8cd98f00b204e9800998ecf8427e", "score": 33},
        {"value": "fp.example.org", "score": 95},
        {"value": "gone.example.org", "score": 50, "valid_from": older, "valid_until": past},
        {"value": "2001:db8::1", "score": 41},
    ]
    made = (await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=h)).json()
    assert made["rejected"] == 0, made
    ids = {item["value"]: uuid.UUID(r["id"]) for item, r in zip(items, made["results"], strict=True)}
    sighted = await client.post(
        f"/api/v1/indicators/{ids['2001:db8::1']}/sightings", json={"count": 6, "source": "ids"}, headers=h
    )
    assert sighted.status_code == 201, sighted.text
    fp = await client.post(
        f"/api/v1/indicators/{ids['fp.example.org']}/false-positive", json={"reason": "CDN"}, headers=h
    )
    assert fp.status_code in (200, 204), fp.text
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org))
        now = utcnow()
        # Seen long ago, at odd microseconds and at a whole second, so decay and timestamps both show.
        for value, days, micro in (
            ("198.51.100.7", 10.3, 123_456),
            ("decays.example.org", 45.0, 0),
            ("http://drop.example.net/a.bin", 200.7, 5),
        ):
            seen = (now - timedelta(days=days)).replace(microsecond=micro)
            await session.execute(update(Indicator).where(Indicator.id == ids[value]).values(last_seen=seen))
        actor, campaign = new_id(), new_id()
        await session.execute(
            insert(ThreatActor).values(
                id=actor, org_id=uuid.UUID(org), name="Actor J", created_at=now, updated_at=now
            )
        )
        await session.execute(
            insert(Campaign).values(
                id=campaign, org_id=uuid.UUID(org), name="Op J", created_at=now, updated_at=now
            )
        )
        for source_type, source, target_type, target, rel in (
            ("indicator", ids["198.51.100.7"], "threat-actor", actor, "indicates"),
            ("campaign", campaign, "indicator", ids["198.51.100.7"], "uses"),
        ):
            await session.execute(
                insert(Relationship).values(
                    id=new_id(),
                    org_id=uuid.UUID(org),
                    source_type=source_type,
                    source_id=source,
                    target_type=target_type,
                    target_id=target,
                    relationship_type=rel,
                    created_at=now,
                    updated_at=now,
                )
            )
        await session.commit()

    values = [item["value"] for item in items] + ["hxxp://drop[.]example[.]net/a.bin", "unknown.example", "?"]
    for include_expired in (False, True):
        batch = await client.post(
            "/api/v1/lookup", json={"values": values, "include_expired": include_expired}, headers=h
        )
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        for value, from_batch in zip(values, results, strict=True):
            params = {"value": value, "include_expired": str(include_expired).lower()}
            single = (await client.get("/api/v1/lookup", params=params, headers=h)).json()
            assert from_batch == single, value
    by_value = {r["value"]: r for r in results}
    ip = by_value["198.51.100.7"]["matches"][0]
    assert 0 < ip["effective_score"] < 80 and ip["tags"] == ["scan", "tor"]
    assert ip["related"]["actors"][0]["name"] == "Actor J" and ip["related"]["campaigns"][0]["name"] == "Op J"
    assert by_value["decays.example.org"]["matches"][0]["effective_score"] == 64  # never decays here
    assert by_value["2001:db8::1"]["matches"][0]["effective_score"] > 41  # lifted by sightings
    assert by_value["fp.example.org"]["matches"][0]["effective_score"] == 0
    assert by_value["gone.example.org"]["matches"][0]["expired"] is True
