"""Domain events reach outbound webhooks: indicators created and merged, sightings added."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from raptorflow.jobs.service import wait_for
from tests.conftest import Actor
from tests.platform.conftest import Receiver
from tests.platform.test_webhooks import _hook, _jobs_of_kind


async def test_indicator_and_sighting_events_are_delivered(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str], receiver: Receiver
) -> None:
    actor, org_id = owner
    h = actor.in_org(org_id)
    await _hook(
        pclient,
        actor,
        org_id,
        url=receiver.url,
        events=["indicator.created", "indicator.updated"],
        min_score=70,
    )
    await _hook(pclient, actor, org_id, url=receiver.url, events=["sighting.added"])
    bulk = await pclient.post(
        "/api/v1/indicators/bulk",
        json={
            "items": [{"value": "hot.example.com", "score": 80}, {"value": "cold.example.com", "score": 50}]
        },
        headers=h,
    )
    assert bulk.status_code == 200 and bulk.json()["created"] == 2
    hot_id = bulk.json()["results"][0]["id"]
    merged = await pclient.post(
        "/api/v1/indicators", json={"value": "hot.example.com", "tags": ["again"]}, headers=h
    )
    assert merged.status_code == 200
    sighting = await pclient.post(f"/api/v1/indicators/{hot_id}/sightings", json={"count": 3}, headers=h)
    assert sighting.status_code == 201, sighting.text
    for job_id in await _jobs_of_kind(papp, org_id):
        await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    events = sorted(
        (
            orjson.loads(body)["event"],
            orjson.loads(body)["data"].get("value") or orjson.loads(body)["data"]["count"],
        )
        for _headers, body in receiver.requests
    )
    # The 50-point indicator is under the first webhook's threshold: no event for it.
    assert events == [
        ("indicator.created", "hot.example.com"),
        ("indicator.updated", "hot.example.com"),
        ("sighting.added", 3),
    ]
