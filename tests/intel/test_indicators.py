"""Indicators: create/merge, normalization at the door, bulk, lists, search, history, scoring, stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Actor, add_member, create_org, sign_up

IND = "/api/v1/indicators"


@pytest.fixture
async def analyst(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    owner = await sign_up(client, "analyst@example.com")
    return owner, await create_org(owner, "intel")


async def _create(client: httpx.AsyncClient, actor: Actor, org: str, **body: Any) -> httpx.Response:
    return await client.post(IND, json=body, headers=actor.in_org(org))


async def test_create_normalizes_and_merges(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    first = await _create(
        client,
        actor,
        org,
        value="hxxps://Evil[.]Example.COM:443/path?q=1",
        tags=["APT"],
        source="feed-a",
        confidence=40,
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["type"] == "url"
    assert body["value"] == "https://evil.example.com/path?q=1"
    assert first.headers["location"] == f"{IND}/{body['id']}"
    assert body["tags"] == ["apt"] and body["sources"] == ["feed-a"]
    again = await _create(
        client,
        actor,
        org,
        value="https://evil.example.com/path?q=1",
        tags=["c2"],
        source="feed-b",
        confidence=80,
    )
    assert again.status_code == 200
    merged = again.json()
    assert merged["id"] == body["id"]
    assert merged["tags"] == ["apt", "c2"]
    assert merged["sources"] == ["feed-a", "feed-b"]
    assert merged["confidence"] == 80
    lower = await _create(client, actor, org, value="https://evil.example.com/path?q=1", confidence=10)
    assert lower.json()["confidence"] == 80
    listed = (await client.get(IND, headers=actor.in_org(org))).json()["items"]
    assert len(listed) == 1


@pytest.mark.parametrize(
    ("value", "type_", "field", "reason"),
    [
        ("abc", "sha256", "value", "64"),
        ("999.1.1.1", "ipv4", "value", "IPv4"),
        ("hello world", None, "value", "type"),
        ("1.2.3.4", "bogus", "type", "unknown type"),
    ],
)
async def test_invalid_values_name_the_reason(
    client: httpx.AsyncClient,
    analyst: tuple[Actor, str],
    value: str,
    type_: str | None,
    field: str,
    reason: str,
) -> None:
    actor, org = analyst
    response = await _create(client, actor, org, value=value, **({"type": type_} if type_ else {}))
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"] == field
    assert reason.lower() in error["message"].lower()


async def test_ip_alias_and_detection(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    v6 = await _create(client, actor, org, value="2001:DB8:0:0:0:0:0:1", type="ip")
    assert v6.json()["type"] == "ipv6" and v6.json()["value"] == "2001:db8::1"
    sha = await _create(
        client, actor, org, value="E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
    )
    assert sha.json()["type"] == "sha256" and sha.json()["value"].islower()


async def test_bulk_is_per_item(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    await _create(client, actor, org, value="10.0.0.1", tags=["old"])
    items = [
        {"value": "10.0.0.1", "tags": ["new"]},
        {"value": "not a thing at all"},
        {"value": "evil.example.org", "score": 90},
        {"value": "EVIL.example.org.", "tags": ["dup"]},
        {"value": "8.8.8.8", "score": 101},
        {"value": "1.1.1.1", "project_id": "01900000-0000-7000-8000-000000000000"},
    ]
    response = await client.post(f"{IND}/bulk", json={"items": items}, headers=actor.in_org(org))
    assert response.status_code == 200, response.text
    out = response.json()
    statuses = [r["status"] for r in out["results"]]
    assert statuses == ["merged", "rejected", "created", "merged", "rejected", "rejected"]
    assert (out["created"], out["merged"], out["rejected"]) == (1, 2, 3)
    assert out["results"][2]["id"] == out["results"][3]["id"]
    assert out["results"][4]["errors"][0]["field"] == "score"
    assert out["results"][5]["errors"][0]["field"] == "project_id"
    domain = (await client.get(f"{IND}/{out['results'][2]['id']}", headers=actor.in_org(org))).json()
    assert domain["value"] == "evil.example.org" and domain["tags"] == ["dup"] and domain["score"] == 90
    ip = (await client.get(f"{IND}/{out['results'][0]['id']}", headers=actor.in_org(org))).json()
    assert ip["tags"] == ["old", "new"]
    too_many = await client.post(
        f"{IND}/bulk", json={"items": [{"value": "1.1.1.1"}] * 1001}, headers=actor.in_org(org)
    )
    assert too_many.status_code == 422


async def test_list_filters_sort_and_paging(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    items = [
        {
            "value": f"192.0.2.{i}",
            "score": i * 10,
            "tags": ["even" if i % 2 == 0 else "odd"],
            "classification": "malicious" if i > 5 else "suspicious",
            "tlp": "green",
        }
        for i in range(10)
    ]
    await client.post(f"{IND}/bulk", json={"items": items}, headers=actor.in_org(org))
    await _create(client, actor, org, value="example.net", source="osint")
    h = actor.in_org(org)
    by_tag = (await client.get(IND, params={"tag": "even"}, headers=h)).json()["items"]
    assert len(by_tag) == 5
    scored = (await client.get(IND, params={"min_score": 60, "sort": "-score"}, headers=h)).json()["items"]
    assert [i["score"] for i in scored] == [90, 80, 70, 60]
    assert len((await client.get(IND, params={"type": "domain"}, headers=h)).json()["items"]) == 1
    assert len((await client.get(IND, params={"source": "osint"}, headers=h)).json()["items"]) == 1
    assert (
        len((await client.get(IND, params={"classification": "malicious"}, headers=h)).json()["items"]) == 4
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "sort": "score,-value"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(IND, params=params, headers=h)).json()
        seen += [i["value"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 11 and len(set(seen)) == 11
    bad = await client.get(IND, params={"sort": "password"}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sort"
    naive = await client.get(IND, params={"last_seen_after": "2026-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422


async def test_search_substring(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    await _create(client, actor, org, value="login-microsoftonline.example.com", description="phishing kit")
    await _create(client, actor, org, value="203.0.113.7", tags=["Cobalt-Strike"])
    await _create(client, actor, org, value="benign.example.org")
    assert [
        i["value"]
        for i in (await client.get(f"{IND}/search", params={"q": "MICROSOFT"}, headers=h)).json()["items"]
    ] == ["login-microsoftonline.example.com"]
    assert [
        i["value"]
        for i in (await client.get(f"{IND}/search", params={"q": "cobalt"}, headers=h)).json()["items"]
    ] == ["203.0.113.7"]
    assert len((await client.get(f"{IND}/search", params={"q": "kit"}, headers=h)).json()["items"]) == 1
    assert (await client.get(f"{IND}/search", params={"q": "zzzz-nothing"}, headers=h)).json()["items"] == []
    assert len((await client.get(f"{IND}/search", params={"q": "ex"}, headers=h)).json()["items"]) == 2


async def test_search_pages_newest_first(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    """Search results page with the cursor, newest first, each match once."""
    actor, org = analyst
    h = actor.in_org(org)
    made = [
        (await _create(client, actor, org, value=f"pager-{i}.example.com")).json()["id"] for i in range(7)
    ]
    await _create(client, actor, org, value="unrelated.example.org")
    seen: list[str] = []
    sizes = []
    cursor = None
    while True:
        params = {"q": "pager-", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{IND}/search", params=params, headers=h)).json()
        sizes.append(len(page["items"]))
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sizes[:2] == [3, 3] and sum(sizes) == 7
    assert seen == list(reversed(made))


async def test_search_finds_hashes_by_prefix(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    """A pasted hash prefix (any case) finds the hash; its tags and description stay searchable; a
    domain containing the same hex is found beside it."""
    actor, org = analyst
    h = actor.in_org(org)
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    await _create(client, actor, org, value=sha, tags=["Emotet-Loader"], description="dropped by macro")
    await _create(client, actor, org, value="d41d8cd98f00b204e9800998ecf8427e")
    await _create(client, actor, org, value="9f86d0.example.net")

    async def found(q: str) -> list[str]:
        page = await client.get(f"{IND}/search", params={"q": q}, headers=h)
        assert page.status_code == 200, page.text
        return sorted(i["value"] for i in page.json()["items"])

    assert await found("9F86D081884C") == [sha]
    assert await found("9f86d0") == sorted([sha, "9f86d0.example.net"])
    assert await found("d41d8cd98f00b204e9800998ecf8427e") == ["d41d8cd98f00b204e9800998ecf8427e"]
    assert await found("emotet") == [sha]
    assert await found("macro") == [sha]


async def test_update_history_archive_false_positive(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    created = (await _create(client, actor, org, value="198.51.100.9", score=80)).json()
    url = f"{IND}/{created['id']}"
    patched = await client.patch(url, json={"score": 30, "tags": ["Reviewed"]}, headers=h)
    assert (
        patched.status_code == 200
        and patched.json()["score"] == 30
        and patched.json()["tags"] == ["reviewed"]
    )
    assert (await client.patch(url, json={"value": "1.1.1.1"}, headers=h)).status_code == 422
    fp = await client.post(f"{url}/false-positive", json={"reason": "our VPN egress"}, headers=h)
    assert fp.json()["false_positive"] is True and fp.json()["effective_score"] == 0
    assert fp.json()["score_breakdown"]["false_positive"] is True
    cleared = await client.delete(f"{url}/false-positive", headers=h)
    assert cleared.json()["false_positive"] is False and cleared.json()["effective_score"] > 0
    archived = await client.post(f"{url}/archive", headers=h)
    assert archived.json()["archived"] is True
    assert (await client.get(IND, headers=h)).json()["items"] == []
    assert len((await client.get(IND, params={"archived": True}, headers=h)).json()["items"]) == 1
    await client.post(f"{url}/unarchive", headers=h)
    history = (await client.get(f"{url}/history", headers=h)).json()["items"]
    actions = [e["action"] for e in history]
    assert actions == [
        "unarchived",
        "archived",
        "false_positive_cleared",
        "false_positive",
        "updated",
        "created",
    ]
    assert history[4]["changes"]["score"] == [80, 30]
    assert history[4]["actor_user_id"] == actor.user_id
    assert (await client.delete(url, headers=h)).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404


async def test_effective_score_decays_by_type(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    seen = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    ip = (
        await _create(client, actor, org, value="203.0.113.50", score=80, last_seen=seen, first_seen=seen)
    ).json()
    sha = (
        await _create(client, actor, org, value="a" * 64, score=80, last_seen=seen, first_seen=seen)
    ).json()
    dom = (
        await _create(client, actor, org, value="decay.example", score=80, last_seen=seen, first_seen=seen)
    ).json()
    assert ip["effective_score"] == 40  # one IP half-life (30 days)
    assert sha["effective_score"] == 80  # hashes never decay
    assert 60 < dom["effective_score"] < 70  # a third of a 90-day half-life
    assert ip["score_breakdown"]["half_life_days"] == 30
    assert ip["score_breakdown"]["decay"] == -40
    older = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    two = (
        await _create(client, actor, org, value="203.0.113.51", score=80, last_seen=older, first_seen=older)
    ).json()
    assert two["effective_score"] == 20  # two half-lives
    # Seen again now: the merge moves last_seen, and the decay starts over.
    fresh = (await _create(client, actor, org, value="203.0.113.51")).json()
    assert fresh["effective_score"] == 80
    assert (await client.get(f"{IND}/{two['id']}", headers=h)).json()["effective_score"] == 80


async def test_expiry(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    start = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    row = (
        await _create(client, actor, org, value="expired.example", valid_from=start, valid_until=past)
    ).json()
    assert row["expired"] is True
    assert len((await client.get(IND, params={"expired": True}, headers=h)).json()["items"]) == 1
    bad = await _create(client, actor, org, value="x.example", valid_from=past, valid_until=start)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "valid_until"


async def test_bulk_patch_by_filter(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    await client.post(
        f"{IND}/bulk",
        json={"items": [{"value": f"10.9.0.{i}", "tags": ["batch"]} for i in range(5)]},
        headers=h,
    )
    await _create(client, actor, org, value="keep.example", tags=["batch"])
    res = await client.patch(
        f"{IND}/bulk",
        json={
            "filter": {"type": "ipv4", "tag": "batch"},
            "set": {"add_tags": ["triaged"], "classification": "benign"},
        },
        headers=h,
    )
    assert res.status_code == 200 and res.json()["matched"] == 5
    triaged = (await client.get(IND, params={"tag": "triaged"}, headers=h)).json()["items"]
    assert len(triaged) == 5 and all(i["classification"] == "benign" for i in triaged)
    archived = await client.patch(
        f"{IND}/bulk", json={"filter": {"tag": "triaged"}, "set": {"archived": True}}, headers=h
    )
    assert archived.json()["matched"] == 5
    assert [i["value"] for i in (await client.get(IND, headers=h)).json()["items"]] == ["keep.example"]
    empty = await client.patch(f"{IND}/bulk", json={"filter": {}, "set": {"archived": True}}, headers=h)
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "filter"


async def test_stats(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    items = [{"value": f"10.1.0.{i}", "score": 80} for i in range(3)] + [
        {"value": "stats.example", "score": 10}
    ]
    await client.post(f"{IND}/bulk", json={"items": items}, headers=h)
    stats = (await client.get(f"{IND}/stats", headers=h)).json()
    assert stats["total"] == 4
    assert stats["by_type"] == {"ipv4": 3, "domain": 1}
    assert stats["by_score_band"] == {"75-100": 3, "0-24": 1}
    assert sum(d["count"] for d in stats["added_per_day"]) == 4


async def test_roles(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    owner, org = analyst
    viewer = await sign_up(client, "iv@example.com")
    editor = await sign_up(client, "ie@example.com")
    await add_member(owner, org, viewer, "viewer")
    await add_member(owner, org, editor, "editor")
    assert (await _create(client, viewer, org, value="1.2.3.4")).status_code == 403
    mine = (await _create(client, editor, org, value="1.2.3.5")).json()
    theirs = (await _create(client, owner, org, value="1.2.3.6")).json()
    assert (await client.delete(f"{IND}/{theirs['id']}", headers=editor.in_org(org))).status_code == 403
    assert (await client.post(f"{IND}/{theirs['id']}/archive", headers=editor.in_org(org))).status_code == 403
    assert (await client.delete(f"{IND}/{mine['id']}", headers=editor.in_org(org))).status_code == 204
    assert (await client.get(f"{IND}/{theirs['id']}", headers=viewer.in_org(org))).status_code == 200


async def test_other_org_cannot_see(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    owner, org = analyst
    other = await sign_up(client, "other@example.com")
    other_org = await create_org(other, "other")
    row = (await _create(client, owner, org, value="secret.example")).json()
    assert (await client.get(f"{IND}/{row['id']}", headers=other.in_org(other_org))).status_code == 404
    assert (await client.get(IND, headers=other.in_org(other_org))).json()["items"] == []
    same = await _create(client, other, other_org, value="secret.example")
    assert same.status_code == 201 and same.json()["id"] != row["id"]


async def test_org_scoring_settings(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    defaults = (await client.get(f"{IND}/scoring", headers=h)).json()["half_life_days"]
    assert defaults["ipv4"] == 30 and defaults["sha256"] is None
    seen = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    row = (
        await _create(client, actor, org, value="203.0.113.80", score=80, last_seen=seen, first_seen=seen)
    ).json()
    updated = await client.put(
        f"{IND}/scoring", json={"half_life_days": {"ipv4": 10, "sha256": 365}}, headers=h
    )
    assert updated.status_code == 200 and updated.json()["half_life_days"]["ipv4"] == 10
    assert (await client.get(f"{IND}/{row['id']}", headers=h)).json()["effective_score"] == 40
    bad = await client.put(f"{IND}/scoring", json={"half_life_days": {"nope": 3}}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "half_life_days.nope"
    editor = await sign_up(client, "scoring-editor@example.com")
    await add_member(actor, org, editor, "editor")
    refused = await client.put(f"{IND}/scoring", json={"half_life_days": {}}, headers=editor.in_org(org))
    assert refused.status_code == 403


async def test_delete_detaches_relationships(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    a = (await _create(client, actor, org, value="rel-a.example")).json()
    b = (await _create(client, actor, org, value="rel-b.example")).json()
    rel = await client.post(
        "/api/v1/relationships",
        json={"source_id": a["id"], "target_id": b["id"], "relationship_type": "related-to"},
        headers=h,
    )
    assert rel.status_code == 201, rel.text
    assert (await client.delete(f"{IND}/{a['id']}", headers=h)).status_code == 204
    left = (await client.get("/api/v1/relationships", params={"object_id": b["id"]}, headers=h)).json()[
        "items"
    ]
    assert left == []


async def test_deleting_an_actor_detaches_its_relationships(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    h = actor.in_org(org)
    ind = (await _create(client, actor, org, value="actor-linked.example")).json()
    apt = (await client.post("/api/v1/threat-actors", json={"name": "APT Detach"}, headers=h)).json()
    rel = await client.post(
        "/api/v1/relationships",
        json={"source_id": ind["id"], "target_id": apt["id"], "relationship_type": "indicates"},
        headers=h,
    )
    assert rel.status_code == 201, rel.text
    assert (await client.delete(f"/api/v1/threat-actors/{apt['id']}", headers=h)).status_code == 204
    left = (await client.get("/api/v1/relationships", params={"object_id": ind["id"]}, headers=h)).json()[
        "items"
    ]
    assert left == []
