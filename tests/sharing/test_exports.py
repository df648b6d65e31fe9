"""Exports: CSV, blocklist text, MISP event JSON, Suricata/Snort rules with stable sids; filters; streaming."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from tests.conftest import Actor, create_org, sign_up

EXP = "/api/v1/exports"


@pytest.fixture
async def loaded(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org with a mix of indicators."""
    owner = await sign_up(client, "export@example.com")
    org = await create_org(owner, "export")
    items = [
        {"value": "185.243.115.84", "score": 90, "tags": ["c2"], "tlp": "green"},
        {"value": "45.61.137.12", "score": 40},
        {"value": "2a03:b0c0:3:d0::1a51:c001", "score": 80},
        {"value": "update-check.net", "score": 85, "tags": ["c2", "darkloader"]},
        {"value": "http://cdn-update.logistics-portal.com/wp/loader.bin?x=1;y", "score": 75},
        {"value": "https://files.darkstore.xyz/upload.php", "score": 75},
        {"value": "d41d8cd98f00b204e9800998ecf8427e", "score": 70, "description": 'quoted "desc", comma'},
        {"value": "CVE-2023-38831", "score": 60},
    ]
    response = await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=owner.in_org(org))
    assert response.json()["created"] == len(items)
    return owner, org


async def test_csv_roundtrips_every_field(client: httpx.AsyncClient, loaded: tuple[Actor, str]) -> None:
    actor, org = loaded
    response = await client.get(EXP + "/indicators.csv", headers=actor.in_org(org))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 8
    by_value = {r["value"]: r for r in rows}
    assert by_value["update-check.net"]["tags"] == "c2;darkloader"
    assert by_value["d41d8cd98f00b204e9800998ecf8427e"]["description"] == 'quoted "desc", comma'
    assert by_value["185.243.115.84"]["tlp"] == "green" and by_value["185.243.115.84"]["type"] == "ipv4"


async def test_blocklist_filters(client: httpx.AsyncClient, loaded: tuple[Actor, str]) -> None:
    actor, org = loaded
    response = await client.get(
        EXP + "/indicators.txt", params={"type": "ipv4", "min_score": 70}, headers=actor.in_org(org)
    )
    assert response.status_code == 200
    assert response.text == "185.243.115.84\n"
    tagged = await client.get(EXP + "/indicators.txt", params={"tag": "c2"}, headers=actor.in_org(org))
    assert sorted(tagged.text.split()) == ["185.243.115.84", "update-check.net"]
    bad = await client.get(EXP + "/indicators.txt", params={"min_score": 500}, headers=actor.in_org(org))
    assert bad.status_code == 422


async def test_blocklist_leaves_out_false_positives(
    client: httpx.AsyncClient, loaded: tuple[Actor, str]
) -> None:
    actor, org = loaded
    headers = actor.in_org(org)
    listed = await client.get("/api/v1/indicators", params={"type": "ipv4"}, headers=headers)
    target = next(i for i in listed.json()["items"] if i["value"] == "185.243.115.84")
    await client.post(
        f"/api/v1/indicators/{target['id']}/false-positive", json={"reason": "cdn"}, headers=headers
    )
    text = (await client.get(EXP + "/indicators.txt", params={"type": "ipv4"}, headers=headers)).text
    assert text == "45.61.137.12\n"


async def test_misp_event(client: httpx.AsyncClient, loaded: tuple[Actor, str]) -> None:
    actor, org = loaded
    response = await client.get(
        EXP + "/indicators.misp.json", params={"info": "Weekly"}, headers=actor.in_org(org)
    )
    event = response.json()["Event"]
    assert event["info"] == "Weekly" and event["Orgc"]["name"] == "Export"
    attrs = {a["value"]: a for a in event["Attribute"]}
    assert len(attrs) == 8
    assert attrs["185.243.115.84"]["type"] == "ip-dst"
    assert attrs["update-check.net"]["type"] == "domain"
    assert attrs["CVE-2023-38831"]["type"] == "vulnerability"
    assert {"name": "tlp:green"} in attrs["185.243.115.84"]["Tag"]
    empty = await client.get(EXP + "/indicators.misp.json", params={"type": "asn"}, headers=actor.in_org(org))
    assert empty.json()["Event"]["Attribute"] == []


@pytest.mark.parametrize("engine", ["suricata", "snort"])
async def test_rules_stable_sids(client: httpx.AsyncClient, loaded: tuple[Actor, str], engine: str) -> None:
    actor, org = loaded
    first = await client.get(EXP + "/indicators.rules", params={"engine": engine}, headers=actor.in_org(org))
    assert first.status_code == 200
    rules = [line for line in first.text.splitlines() if line.startswith("alert")]
    sids = [int(m) for m in re.findall(r"sid:(\d+);", first.text)]
    assert len(sids) == len(set(sids)) == len(rules)
    # 3 IPs x 2 directions, a domain (DNS + SNI), an http URL, an https URL (SNI); hashes and CVEs have none.
    assert len(rules) == 10
    text = first.text
    if engine == "suricata":
        assert 'dns.query; dotprefix; content:".update-check.net"; nocase; endswith;' in text
        assert 'tls.sni; dotprefix; content:".update-check.net"' in text
        assert 'http.uri; content:"/wp/loader.bin?x=1|3B|y"; startswith;' in text
    else:
        assert "|0C|update-check|03|net|00|" in text
    assert "-> [185.243.115.84] any" in text
    # Adding an indicator changes no existing sid.
    await client.post("/api/v1/indicators", json={"value": "new-domain.org"}, headers=actor.in_org(org))
    second = await client.get(EXP + "/indicators.rules", params={"engine": engine}, headers=actor.in_org(org))
    later = set(re.findall(r"sid:(\d+);", second.text))
    assert set(map(str, sids)) <= later and len(later) == len(sids) + 2


async def test_stix_export_is_a_bundle_of_the_filtered_indicators(
    client: httpx.AsyncClient, loaded: tuple[Actor, str]
) -> None:
    actor, org = loaded
    response = await client.get(EXP + "/indicators.stix.json", headers=actor.in_org(org))
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "bundle"
    assert sum(1 for o in bundle["objects"] if o["type"] == "indicator") == 8
    ips = await client.get(EXP + "/indicators.stix.json", params={"type": "ipv4"}, headers=actor.in_org(org))
    patterns = [o["pattern"] for o in ips.json()["objects"] if o["type"] == "indicator"]
    assert sorted(patterns) == ["[ipv4-addr:value = '185.243.115.84']", "[ipv4-addr:value = '45.61.137.12']"]


async def test_other_org_sees_nothing(client: httpx.AsyncClient, loaded: tuple[Actor, str]) -> None:
    other = await sign_up(client, "other-export@example.com")
    org = await create_org(other, "other-export")
    response = await client.get(EXP + "/indicators.txt", headers=other.in_org(org))
    assert response.status_code == 200 and response.text == ""
