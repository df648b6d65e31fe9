"""Decay counts from when a source last asserted a value — its last_seen, else when it reached us —
on every way an indicator arrives, never from an old first_seen or valid_from."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Actor, create_org, sign_up

LONG_AGO = (datetime.now(UTC) - timedelta(days=300)).replace(microsecond=0)
STAMP = LONG_AGO.isoformat().replace("+00:00", "Z")


def _bundle(value: str, n: int) -> dict[str, Any]:
    return {
        "type": "bundle",
        "id": f"bundle--5d0092c5-5f74-4287-9642-33f4c354e5{n:02d}",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd{n:02d}",
                "created": STAMP,
                "modified": STAMP,
                "pattern": f"[domain-name:value = '{value}']",
                "pattern_type": "stix",
                "valid_from": STAMP,
            }
        ],
    }


async def _import(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> None:
    started = await client.post("/api/v1/imports", json=body, headers=headers)
    assert started.status_code == 202, started.text
    for _ in range(400):
        job = (await client.get(f"/api/v1/imports/{started.json()['id']}", headers=headers)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded" and job["created"] == 1, job
            return
        await asyncio.sleep(0.05)
    raise AssertionError("import did not finish")


async def test_an_old_first_seen_or_valid_from_does_not_decay_a_value_received_now(
    client: httpx.AsyncClient,
) -> None:
    owner: Actor = await sign_up(client, "decay@example.com")
    headers = owner.in_org(await create_org(owner, "decay"))
    # Domains halve in 90 days: counted from 300 days ago, a score of 80 would show 8.
    await client.post(
        "/api/v1/indicators",
        json={"value": "api.example.org", "score": 80, "first_seen": STAMP},
        headers=headers,
    )
    await client.post(
        "/api/v1/indicators/bulk",
        json={"items": [{"value": "bulk.example.org", "score": 80, "first_seen": STAMP}]},
        headers=headers,
    )
    csv = f"value,first_seen,score\ncsv.example.org,{STAMP},80\n"
    await _import(client, headers, {"format": "csv", "content": csv})
    await _import(client, headers, {"format": "stix", "content": _bundle("job.example.org", 1)})
    synced = await client.post("/api/v1/stix/bundles", json=_bundle("sync.example.org", 2), headers=headers)
    assert synced.status_code in (200, 201), synced.text
    listed = await client.get("/api/v1/indicators", params={"limit": 100}, headers=headers)
    stored = {i["value"]: i for i in listed.json()["items"]}
    paths = ("api", "bulk", "csv", "job", "sync")
    assert set(stored) == {f"{p}.example.org" for p in paths}
    decayed, first_seen_lost = [], []
    for value, row in sorted(stored.items()):
        one = (await client.get(f"/api/v1/indicators/{row['id']}", headers=headers)).json()
        if one["effective_score"] != one["score"] or datetime.fromisoformat(
            one["last_seen"]
        ) < LONG_AGO + timedelta(days=299):
            decayed.append((value, one["last_seen"], one["score_breakdown"]))
        # What the source said about when it first saw the value is kept.
        if value.startswith(("api", "bulk", "csv")) and datetime.fromisoformat(one["first_seen"]) != LONG_AGO:
            first_seen_lost.append((value, one["first_seen"]))
    assert decayed == [] and first_seen_lost == []
