"""Batches are rendered by PostgreSQL (raptorflow_lookup_json), single values in Python: same bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, text, update

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
    # Small chunks: the batch's keys go to PostgreSQL as four statements in flight at once (the first 3
    # keys, then the rest in three parts), and repeats of a key fall in other chunks than the key.
    monkeypatch.setattr(lookup_service, "FIRST_CHUNK", 3)
    monkeypatch.setattr(lookup_service, "LAST_PARTS", 3)
    monkeypatch.setattr(lookup_service, "PART_MIN", 1)
    owner = await sign_up(client, "batch-json@example.com")
    org = await create_org(owner, "batch-json")
    h = owner.in_org(org)
    # The org's own half-lives: IPv4 a week, IPv6 half a day, domains never (null), MD5 (never by
    # default) three days; URLs never either, by a 0 written below (older settings hold such zeros).
    half_lives = {"ipv4": 7, "ipv6": 0.5, "domain": None, "md5": 3}
    scoring = await client.put("/api/v1/indicators/scoring", json={"half_life_days": half_lives}, headers=h)
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
        # Strings PostgreSQL and orjson must escape alike: quote, backslash, non-ASCII, in value and tags.
        {
            "value": 'http://example.com/a"b\\c?q=é',
            "score": 58,
            "tags": ['q"uote', "back\\slash", "ünï"],
        },
        {"value": "archived.example.org", "score": 70},
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
    archived = await client.post(f"/api/v1/indicators/{ids['archived.example.org']}/archive", headers=h)
    assert archived.status_code == 200, archived.text
    async with app.state.session_factory() as session:
        await bind_org(session, uuid.UUID(org))
        now = utcnow()
        # Seen long ago, at odd microseconds, at a whole second and at fractions PostgreSQL prints
        # shorter than isoformat() (.12, .5), so decay and timestamps both show.
        for value, days, micro in (
            ("198.51.100.7", 10.3, 123_456),
            ("decays.example.org", 45.0, 0),
            ("http://drop.example.net/a.bin", 200.7, 5),
            ("d41d8cd98f00b204e9800998ecf8427e", 4.2, 120_000),
            ("2001:db8::1", 33.3, 500_000),
            ('http://example.com/a"b\\c?q=é', 1.5, 999_990),
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
        await session.execute(
            text(
                "UPDATE organizations SET settings = jsonb_set(settings, '{half_life_days,url}', '0')"
                " WHERE id = :org"
            ),
            {"org": uuid.UUID(org)},
        )
        await session.commit()

    # Repeats (the same value, a refanged spelling of another), unknown and malformed values.
    values = [item["value"] for item in items] + [
        "hxxp://drop[.]example[.]net/a.bin",
        "unknown.example",
        "?",
        "198.51.100.7",
    ]
    for include_expired in (False, True):
        batch = await client.post(
            "/api/v1/lookup", json={"values": values, "include_expired": include_expired}, headers=h
        )
        assert batch.status_code == 200, batch.text
        singles = []
        for value in values:
            params = {"value": value, "include_expired": str(include_expired).lower()}
            single = await client.get("/api/v1/lookup", params=params, headers=h)
            assert single.status_code == 200, single.text
            singles.append(single.content)
        # Byte for byte: each match PostgreSQL wrote is what orjson writes for the Python path's dict.
        assert batch.content == b'{"results":[' + b",".join(singles) + b"]}"
    results = batch.json()["results"]
    by_value = {r["value"]: r for r in results}
    ip = by_value["198.51.100.7"]["matches"][0]
    assert 0 < ip["effective_score"] < 80 and ip["tags"] == ["scan", "tor"]
    assert ip["last_seen"].endswith(".123456+00:00")
    assert ip["related"]["actors"][0]["name"] == "Actor J" and ip["related"]["campaigns"][0]["name"] == "Op J"
    assert by_value["decays.example.org"]["matches"][0]["effective_score"] == 64  # never decays here
    assert by_value["decays.example.org"]["matches"][0]["last_seen"][19:] == "+00:00"  # whole second
    assert by_value["d41d8cd98f00b204e9800998ecf8427e"]["matches"][0]["effective_score"] < 33  # 3 days here
    assert by_value["d41d8cd98f00b204e9800998ecf8427e"]["matches"][0]["last_seen"].endswith(".120000+00:00")
    assert 0 < by_value["2001:db8::1"]["matches"][0]["effective_score"] < 41  # decayed, lifted by sightings
    assert by_value["http://drop.example.net/a.bin"]["matches"][0]["effective_score"] == 77  # 0: never
    assert by_value["fp.example.org"]["matches"][0]["effective_score"] == 0
    assert by_value["gone.example.org"]["matches"][0]["expired"] is True
    assert by_value["archived.example.org"]["found"] is False
    odd = by_value['http://example.com/a"b\\c?q=é']["matches"][0]
    assert odd["tags"] == ['q"uote', "back\\slash", "ünï"] and odd["last_seen"].endswith(".999990+00:00")
    assert results[-1] == results[0] and results[-1]["found"] is True
    assert results[-3]["found"] is False and results[-2]["error"]

    # Another org sees only its own copy of a value, and nothing of the first org's.
    other = await sign_up(client, "batch-json-other@example.com")
    other_org = await create_org(other, "batch-json-other")
    oh = other.in_org(other_org)
    mine = await client.post("/api/v1/indicators", json={"value": "198.51.100.7", "score": 12}, headers=oh)
    assert mine.status_code == 201, mine.text
    theirs = (await client.post("/api/v1/lookup", json={"values": values}, headers=oh)).json()["results"]
    assert [r["found"] for r in theirs] == [r["value"] == "198.51.100.7" for r in theirs]
    assert theirs[0]["matches"][0]["id"] == mine.json()["id"] and theirs[0]["matches"][0]["related"] == {
        "actors": [],
        "campaigns": [],
    }
