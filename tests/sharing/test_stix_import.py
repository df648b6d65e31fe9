"""STIX bundle import of indicators: per-object outcomes, in-bundle duplicates, merges, re-imports, and
big bundles read in windows and merged in parts (the import job)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from raptorflow.sharing.stix import importer, stream
from tests.conftest import Actor, create_org, sign_up
from tests.sharing.test_imports import IMP, finished, indicators

BUNDLES = "/api/v1/stix/bundles"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
OURS = "marking-definition--" + str(uuid.UUID(int=4242, version=4))


def _id(n: int) -> str:
    return "indicator--" + str(uuid.UUID(int=n, version=4))


def _indicator(
    n: int, pattern: str, modified: str = "2024-01-01T00:00:00.000Z", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": _id(n),
        "created": "2024-01-01T00:00:00.000Z",
        "modified": modified,
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **extra,
    }


def _bundle(objects: list[Any]) -> dict[str, Any]:
    return {"type": "bundle", "id": "bundle--" + str(uuid.uuid4()), "objects": objects}


async def _import(actor: Actor, org: str, objects: list[Any]) -> dict[str, Any]:
    response = await actor.http.post(BUNDLES, json=_bundle(objects), headers=actor.in_org(org))
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    actor = await sign_up(client, "stix-bulk@example.com")
    return actor, await create_org(actor, "stix-bulk")


async def test_invalid_indicators_are_rejected_one_by_one_and_the_rest_imports(
    client: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org = owner
    objects = [
        _indicator(
            1, "[ipv4-addr:value = '198.51.100.1']", labels=["C2"], confidence=80, object_marking_refs=[GREEN]
        ),
        _indicator(2, "[ipv4-addr:value = '10.0.0.999']"),
        _indicator(3, "[ipv4-addr:value = '198.51.100.3'"),
        _indicator(4, "[domain-name:value = 'ok.example.com']", valid_until="2023-01-01T00:00:00Z"),
        _indicator(5, "[domain-name:value = 'ok.example.com']", pattern_type="sigma"),
        _indicator(6, "[domain-name:value = ' Spaced.Example.com ']"),
        _indicator(7, "[ipv4-addr:value = '203.0.113.5'] OR [domain-name:value = 'bad.example.org']"),
        {"type": "indicator", "id": "indicator--nope"},
    ]
    report = await _import(actor, org, objects)
    by_index = {r["index"]: r for r in report["results"]}
    assert [by_index[i]["status"] for i in range(8)] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
        "created",
        "rejected",
    ]
    assert by_index[1]["reason"].startswith("value: ")
    assert by_index[2]["reason"].startswith("pattern: ")
    assert by_index[3]["reason"] == "valid_until must be after valid_from"
    assert "sigma" in by_index[4]["reason"]
    assert (report["created"], report["rejected"]) == (3, 5)
    stored = await indicators(client, actor, org)
    assert set(stored) == {
        "198.51.100.1",
        "spaced.example.com",
        "[ipv4-addr:value = '203.0.113.5'] OR [domain-name:value = 'bad.example.org']",
    }
    c2 = stored["198.51.100.1"]
    assert (c2["stix_id"], c2["tags"], c2["confidence"], c2["tlp"], c2["sources"]) == (
        _id(1),
        ["c2"],
        80,
        "green",
        ["stix"],
    )
    assert by_index[0]["native"] == {"kind": "indicator", "id": c2["id"]}
    assert stored["spaced.example.com"]["stix_id"] == _id(6)


async def test_duplicates_in_one_bundle_fold_into_one_indicator(
    client: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org = owner
    objects = [
        _indicator(1, "[domain-name:value = 'dup.example.com']", labels=["first"], confidence=40),
        _indicator(2, "[domain-name:value = 'DUP.example.com']", labels=["second"], confidence=90),
        _indicator(3, "[ipv4-addr:value = '198.51.100.3']", labels=["old"]),
        _indicator(3, "[ipv4-addr:value = '198.51.100.3']", "2024-02-01T00:00:00.000Z", labels=["new"]),
        _indicator(4, "[ipv4-addr:value = '198.51.100.4']", "2024-02-01T00:00:00.000Z", labels=["new"]),
        _indicator(4, "[ipv4-addr:value = '198.51.100.4']", labels=["old"]),
    ]
    report = await _import(actor, org, objects)
    results = report["results"]
    assert [r["status"] for r in results] == [
        "created",
        "created",
        "unchanged",
        "created",
        "created",
        "unchanged",
    ]
    assert results[1]["reason"] == "merged into an existing indicator with the same value"
    assert results[2]["reason"] == "superseded by a later copy in this bundle"
    assert results[5]["reason"] == "an older copy of an object in this bundle"
    assert results[0]["native"] == results[1]["native"]
    stored = await indicators(client, actor, org)
    dup = stored["dup.example.com"]
    assert (dup["stix_id"], dup["tags"], dup["confidence"]) == (_id(1), ["first", "second"], 90)
    assert stored["198.51.100.3"]["tags"] == ["new"] and stored["198.51.100.4"]["tags"] == ["new"]


async def test_reimport_is_unchanged_and_a_newer_modified_updates(
    client: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org = owner
    objects = [
        _indicator(1, "[ipv4-addr:value = '198.51.100.1']", labels=["a"], confidence=50),
        _indicator(2, "[domain-name:value = 'keep.example.com']"),
        _indicator(3, "[ipv4-addr:value = '10.0.0.999']"),
    ]
    first = await _import(actor, org, objects)
    assert (first["created"], first["rejected"]) == (2, 1)
    before = await indicators(client, actor, org)
    again = await _import(actor, org, objects)
    assert (again["unchanged"], again["rejected"], again["created"], again["updated"]) == (2, 1, 0, 0)
    assert [r.get("native") for r in again["results"][:2]] == [r.get("native") for r in first["results"][:2]]
    assert await indicators(client, actor, org) == before

    newer = _indicator(
        1, "[ipv4-addr:value = '198.51.100.1']", "2024-03-01T00:00:00.000Z", labels=["b"], confidence=70
    )
    third = await _import(actor, org, [newer])
    assert third["results"][0]["status"] == "updated"
    assert third["results"][0]["native"]["id"] == before["198.51.100.1"]["id"]
    after = (await indicators(client, actor, org))["198.51.100.1"]
    assert (after["tags"], after["confidence"]) == (["a", "b"], 70)
    assert after["updated_at"] > before["198.51.100.1"]["updated_at"]
    older = dict(newer, modified="2024-02-01T00:00:00.000Z", labels=["c"])
    assert (await _import(actor, org, [older]))["unchanged"] == 1
    assert (await indicators(client, actor, org))["198.51.100.1"]["tags"] == ["a", "b"]


async def test_import_merges_into_an_existing_indicator_with_history(
    client: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org = owner
    headers = actor.in_org(org)
    made = await client.post(
        "/api/v1/indicators",
        json={"value": "pre.example.com", "tags": ["api"], "confidence": 30},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    existing = made.json()
    report = await _import(
        actor,
        org,
        [
            _indicator(
                1,
                "[domain-name:value = 'pre.example.com']",
                labels=["feed"],
                confidence=60,
                description="seen",
            )
        ],
    )
    result = report["results"][0]
    assert result["status"] == "created"
    assert result["reason"] == "merged into an existing indicator with the same value"
    assert result["native"]["id"] == existing["id"]
    merged = (await indicators(client, actor, org))["pre.example.com"]
    assert (merged["stix_id"], merged["tags"], merged["confidence"], merged["description"]) == (
        _id(1),
        ["api", "feed"],
        60,
        "seen",
    )
    assert merged["sources"] == ["stix"]
    history = (await client.get(f"/api/v1/indicators/{existing['id']}/history", headers=headers)).json()[
        "items"
    ]
    change = next(h for h in history if h["action"] == "merged")["changes"]
    assert change["tags"] == [["api"], ["api", "feed"]] and change["confidence"] == [30, 60]


async def test_big_bundle_job_reads_in_windows_and_merges_in_parts(
    client: httpx.AsyncClient, owner: tuple[Actor, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle many windows long, merged in several parts; a marking defined at its end still applies."""
    monkeypatch.setattr(stream, "WINDOW", 2_000)
    monkeypatch.setattr(stream, "HEAD_LIMIT", 2_000)
    monkeypatch.setattr(importer, "MERGE_PART", 40)
    actor, org = owner
    objects: list[Any] = [
        _indicator(n, f"[ipv4-addr:value = '198.51.{n // 250}.{n % 250}']", labels=[f"batch-{n % 3}"])
        for n in range(1, 201)
    ]
    objects[150]["object_marking_refs"] = [OURS]
    objects[20]["pattern"] = "[ipv4-addr:value = '10.0.0.999']"
    objects.append(
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": OURS,
            "created": "2024-01-01T00:00:00.000Z",
            "name": "Partner TLP:RED",
            "extensions": {
                "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                    "extension_type": "property-extension",
                    "tlp_2_0": "red",
                }
            },
        }
    )
    content = orjson.loads(orjson.dumps(_bundle(objects), option=orjson.OPT_INDENT_2))
    response = await client.post(IMP, json={"format": "stix", "content": content}, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert (done["processed"], done["created"], done["rejected"]) == (201, 200, 1)
    assert done["rejections"][0]["line"] == 20
    stored = await indicators(client, actor, org)
    assert len(stored) == 199
    assert stored["198.51.0.151"]["tlp"] == "red" and stored["198.51.0.150"]["tlp"] == "amber"
    assert stored["198.51.0.200"]["stix_id"] == _id(200)
    again = await client.post(IMP, json={"format": "stix", "content": content}, headers=actor.in_org(org))
    redone = await finished(client, actor, org, again.json()["id"])
    assert (redone["created"], redone["merged"], redone["rejected"]) == (0, 200, 1)
