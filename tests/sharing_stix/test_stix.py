"""STIX 2.1 out (bundles the OASIS validator passes) and in (typed indicators, context, idempotence)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from stix2validator import ValidationOptions, validate_instance

from raptorflow.kit.tenancy import bind_org
from raptorflow.sharing.stix.service import Selection, export_objects
from tests.conftest import Actor, create_org, sign_up

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "stix" / "partner_bundle.json"
STIX = "/api/v1/stix"
EVERY_TYPE = [
    ("ipv4", "198.51.100.7"),
    ("ipv6", "2001:db8::1"),
    ("cidr", "192.0.2.0/24"),
    ("domain", "evil.example.com"),
    ("url", "http://evil.example.com/it's/a\\path"),
    ("email", "phisher@example.org"),
    ("md5", "d41d8cd98f00b204e9800998ecf8427e"),
    ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (
        "sha512",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    ("asn", "AS13335"),
    ("cve", "CVE-2021-44228"),
    ("filename", "invoice.pdf.exe"),
    ("mutex", "Global\\FixtureMutex"),
    ("registry-key", "HKEY_LOCAL_MACHINE\\Software\\Fixture"),
    ("user-agent", "Mozilla/5.0 (FixtureBot)"),
    ("btc-address", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
    ("stix-pattern", "[process:name = 'evil.exe'] AND [file:name = 'x.dll']"),
]


def validate(bundle: dict[str, Any]) -> list[str]:
    """Errors the OASIS stix2-validator reports for a bundle (warnings are not errors)."""
    result = validate_instance(bundle, ValidationOptions(version="2.1"))
    return [str(e) for e in result.errors]


async def _post(actor: Actor, org: str, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await actor.http.post(path, json=body, headers=actor.in_org(org))
    assert response.status_code == status, response.text
    return dict(response.json())


async def _bundle(actor: Actor, org: str, **params: Any) -> dict[str, Any]:
    response = await actor.http.get(f"{STIX}/bundle", params=params, headers=actor.in_org(org))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/stix+json")
    return dict(orjson.loads(response.content))


async def _world(client: httpx.AsyncClient) -> tuple[Actor, str, dict[str, str]]:
    owner = await sign_up(client, "stix-owner@example.com")
    org = await create_org(owner, "stix-org", "Stix Org")
    project = await _post(owner, org, "/api/v1/projects", {"name": "Op Export"})
    ids = {"project": project["id"]}
    tlps = ["clear", "green", "amber", "amber+strict", "red"]
    for n, (kind, value) in enumerate(EVERY_TYPE):
        made = await _post(
            owner,
            org,
            "/api/v1/indicators",
            {
                "value": value,
                "type": kind,
                "project_id": project["id"],
                "tlp": tlps[n % 5],
                "tags": ["fixture"],
                "classification": "malicious",
                "attack_techniques": ["T1059"] if n == 0 else [],
            },
        )
        ids[kind] = made["id"]
    actor = await _post(
        owner, org, "/api/v1/threat-actors", {"name": "Export Actor", "project_id": project["id"]}
    )
    campaign = await _post(
        owner, org, "/api/v1/campaigns", {"name": "Export Campaign", "project_id": project["id"]}
    )
    vuln = await _post(
        owner, org, "/api/v1/vulnerabilities", {"cve_id": "CVE-2024-3094", "project_id": project["id"]}
    )
    ids |= {"actor": actor["id"], "campaign": campaign["id"], "vuln": vuln["id"]}
    for source, target, kind in (
        (ids["ipv4"], actor["id"], "indicates"),
        (ids["domain"], campaign["id"], "indicates"),
        (campaign["id"], actor["id"], "attributed-to"),
        (actor["id"], vuln["id"], "targets"),
    ):
        await _post(
            owner,
            org,
            "/api/v1/relationships",
            {"source_id": source, "target_id": target, "relationship_type": kind},
        )
    await _post(owner, org, f"/api/v1/indicators/{ids['ipv4']}/sightings", {"count": 4, "where": "edge fw"})
    report = await _post(
        owner,
        org,
        "/api/v1/reports",
        {
            "title": "Export report",
            "project_id": project["id"],
            "object_refs": [
                {"type": "indicator", "id": ids["ipv4"]},
                {"type": "threat-actor", "id": actor["id"]},
            ],
        },
    )
    ids["report"] = report["id"]
    return owner, org, ids


async def test_project_bundle_passes_the_oasis_validator_with_every_kind(client: httpx.AsyncClient) -> None:
    """A whole project: every indicator type, context, relationships, sighting, ATT&CK, TLP markings."""
    owner, org, ids = await _world(client)
    bundle = await _bundle(owner, org, scope="project", project_id=ids["project"])
    assert validate(bundle) == []
    by_type: dict[str, list[dict[str, Any]]] = {}
    for obj in bundle["objects"]:
        by_type.setdefault(obj["type"], []).append(obj)
    assert len(by_type["indicator"]) == len(EVERY_TYPE)
    identity = by_type["identity"][0]
    assert identity["name"] == "Stix Org" and identity["identity_class"] == "organization"
    assert all(o["created_by_ref"] == identity["id"] for o in by_type["indicator"] + by_type["relationship"])
    patterns = {o["name"]: o["pattern"] for o in by_type["indicator"]}
    assert patterns["198.51.100.7"] == "[ipv4-addr:value = '198.51.100.7']"
    assert patterns["AS13335"] == "[autonomous-system:number = 13335]"
    assert (
        patterns["http://evil.example.com/it's/a\\path"]
        == "[url:value = 'http://evil.example.com/it\\'s/a\\\\path']"
    )
    assert (
        "[file:hashes.'SHA-256' = 'e3b0c442"
        in patterns["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
    )
    assert patterns[EVERY_TYPE[-1][1]] == EVERY_TYPE[-1][1]
    # TLP 2.0 marking definitions, as OASIS publishes them, for every level used.
    markings = {m["name"]: m["id"] for m in by_type["marking-definition"]}
    assert markings["TLP:AMBER+STRICT"] == "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    assert markings["TLP:CLEAR"] == "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
    assert len(markings) == 5
    # ATT&CK attack-pattern with its external id, linked from the indicator carrying the technique.
    (technique,) = by_type["attack-pattern"]
    assert technique["external_references"][0] == {
        "source_name": "mitre-attack",
        "external_id": "T1059",
        "url": "https://attack.mitre.org/techniques/T1059/",
    }
    assert {o["type"] for o in bundle["objects"]} >= {
        "threat-actor",
        "campaign",
        "vulnerability",
        "report",
        "sighting",
    }
    relationship_types = sorted(r["relationship_type"] for r in by_type["relationship"])
    assert relationship_types == ["attributed-to", "indicates", "indicates", "indicates", "targets"]
    (sighting,) = by_type["sighting"]
    assert sighting["count"] == 4 and sighting["sighting_of_ref"].startswith("indicator--")
    (report,) = by_type["report"]
    assert len(report["object_refs"]) == 2
    # Stable ids: a second export names every object the same.
    again = await _bundle(owner, org, scope="project", project_id=ids["project"])
    assert {o["id"] for o in again["objects"]} == {o["id"] for o in bundle["objects"]}
    assert again["id"] != bundle["id"]


async def test_filter_report_and_neighbourhood_selections(client: httpx.AsyncClient) -> None:
    """Indicator filters, a report, an actor's neighbourhood: each valid, each holding what it names."""
    owner, org, ids = await _world(client)
    hashes = await _bundle(owner, org, type="sha256")
    assert validate(hashes) == []
    assert [o["name"] for o in hashes["objects"] if o["type"] == "indicator"] == [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ]
    report = await _bundle(owner, org, report_id=ids["report"])
    assert validate(report) == []
    assert sorted(
        o["type"] for o in report["objects"] if o["type"] in ("indicator", "threat-actor", "report")
    ) == [
        "indicator",
        "report",
        "threat-actor",
    ]
    near = await _bundle(owner, org, object_id=ids["actor"], depth=1)
    assert validate(near) == []
    names = {o.get("name") for o in near["objects"]}
    assert {"Export Actor", "Export Campaign", "CVE-2024-3094", "198.51.100.7"} <= names
    assert "evil.example.com" not in names  # two hops away (through the campaign)
    deeper = await _bundle(owner, org, object_id=ids["actor"], depth=2)
    assert "evil.example.com" in {o.get("name") for o in deeper["objects"]}
    assert validate(deeper) == []


async def test_unknown_or_foreign_selection_is_404(client: httpx.AsyncClient) -> None:
    """Another org's report, project or object answers like a random id."""
    _owner, _org, ids = await _world(client)
    other = await sign_up(client, "stix-other@example.com")
    other_org = await create_org(other, "stix-other")
    for params in (
        {"report_id": ids["report"]},
        {"object_id": ids["actor"]},
        {"scope": "project", "project_id": ids["project"]},
    ):
        foreign = await client.get(f"{STIX}/bundle", params=params, headers=other.in_org(other_org))
        random = await client.get(
            f"{STIX}/bundle",
            params={
                k: ("0190f000-0000-7000-8000-000000000000" if k != "scope" else v) for k, v in params.items()
            },
            headers=other.in_org(other_org),
        )
        assert foreign.status_code == random.status_code == 404, (params, foreign.text)


def _fixture() -> dict[str, Any]:
    return dict(orjson.loads(FIXTURE.read_bytes()))


async def _import(actor: Actor, org: str, bundle: dict[str, Any], **params: Any) -> dict[str, Any]:
    response = await actor.http.post(f"{STIX}/bundles", json=bundle, params=params, headers=actor.in_org(org))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_import_maps_objects_rejects_bad_ones_and_is_idempotent(client: httpx.AsyncClient) -> None:
    """Typed indicators, stix-pattern, context rows, ATT&CK, relationships, sighting; twice = no change."""
    owner = await sign_up(client, "stix-importer@example.com")
    org = await create_org(owner, "stix-import")
    bundle = _fixture()
    report = await _import(owner, org, bundle)
    by_id = {r["id"]: r for r in report["results"]}
    rejected = {
        r["id"].split("--")[0] + ":" + str(r["index"]): r["reason"]
        for r in report["results"]
        if r["status"] == "rejected"
    }
    assert report["total"] == len(bundle["objects"])
    assert report["rejected"] == 4, rejected
    reasons = " | ".join(rejected.values())
    assert (
        "pattern" in reasons and "created" in reasons and "is_family" in reasons and "ipv4" in reasons.lower()
    )
    assert report["created"] == len(bundle["objects"]) - 4
    headers = owner.in_org(org)
    listed = (await client.get("/api/v1/indicators", params={"limit": 100}, headers=headers)).json()["items"]
    got = {(i["type"], i["value"]): i for i in listed}
    assert set(got) == {
        ("ipv4", "198.51.100.23"),
        ("domain", "login-example.com"),
        ("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("url", "http://evil.example.net/a?b=1"),
        ("stix-pattern", "[ipv4-addr:value = '203.0.113.5'] OR [domain-name:value = 'bad.example.org']"),
    }
    c2 = got[("ipv4", "198.51.100.23")]
    assert c2["tlp"] == "green" and c2["confidence"] == 80 and c2["tags"] == ["c2", "loader"]
    assert c2["stix_id"] == bundle["objects"][2]["id"] and c2["sightings_count"] == 3
    assert got[("domain", "login-example.com")]["tlp"] == "red"
    assert got[("url", "http://evil.example.net/a?b=1")]["classification"] == "suspicious"
    found = (
        await client.get("/api/v1/indicators/search", params={"q": "bad.example.org"}, headers=headers)
    ).json()
    assert [i["type"] for i in found["items"]] == ["stix-pattern"]
    actors = (await client.get("/api/v1/threat-actors", headers=headers)).json()["items"]
    assert sorted(a["name"] for a in actors) == ["APT Fixture", "Raptor Spider"]
    campaigns = (await client.get("/api/v1/campaigns", headers=headers)).json()["items"]
    assert campaigns[0]["name"] == "Operation Fixture" and campaigns[0]["attack_techniques"] == ["T1059"]
    vulns = (await client.get("/api/v1/vulnerabilities", headers=headers)).json()["items"]
    assert [v["cve_id"] for v in vulns] == ["CVE-2024-3094"]
    reports = (await client.get("/api/v1/reports", headers=headers)).json()["items"]
    assert sorted(r["type"] for r in reports[0]["object_refs"]) == ["campaign", "indicator", "threat-actor"]
    rels = (await client.get("/api/v1/relationships", headers=headers)).json()["items"]
    assert sorted(r["relationship_type"] for r in rels) == ["attributed-to", "indicates", "indicates"]
    assert by_id[bundle["objects"][16]["id"]]["reason"] == "ATT&CK T1059"

    again = await _import(owner, org, bundle)
    assert again["unchanged"] == len(bundle["objects"]) - 4 and again["created"] == again["updated"] == 0
    after = (await client.get("/api/v1/indicators", params={"limit": 100}, headers=headers)).json()["items"]
    assert {(i["id"], i["updated_at"], i["sightings_count"]) for i in after} == {
        (i["id"], i["updated_at"], i["sightings_count"]) for i in listed
    }

    newer = copy.deepcopy(bundle)
    actor_obj = next(o for o in newer["objects"] if o["type"] == "threat-actor")
    actor_obj["modified"] = "2024-05-01T00:00:00.000Z"
    actor_obj["aliases"] = ["RSP", "Spider Two"]
    third = await _import(owner, org, {"type": "bundle", "id": newer["id"], "objects": [actor_obj]})
    assert third["updated"] == 1
    actors = (await client.get("/api/v1/threat-actors", params={"q": "Raptor"}, headers=headers)).json()[
        "items"
    ]
    assert next(a for a in actors if a["name"] == "Raptor Spider")["aliases"] == ["RSP", "Spider Two"]
    older = copy.deepcopy(actor_obj)
    older["modified"] = "2024-04-01T00:00:00.000Z"
    assert (await _import(owner, org, {"type": "bundle", "objects": [older]}))["unchanged"] == 1


async def test_round_trip_keeps_stix_ids_between_orgs(client: httpx.AsyncClient) -> None:
    """Our export imported by another org, then exported again: the STIX ids survive both ways."""
    owner, org, ids = await _world(client)
    bundle = await _bundle(owner, org, scope="project", project_id=ids["project"])
    peer = await sign_up(client, "stix-peer@example.com")
    peer_org = await create_org(peer, "stix-peer")
    report = await _import(peer, peer_org, bundle)
    assert report["rejected"] == 0, [r for r in report["results"] if r["status"] == "rejected"]
    out = await _bundle(peer, peer_org)
    theirs = {o["id"] for o in out["objects"] if o["type"] == "indicator"}
    ours = {o["id"] for o in bundle["objects"] if o["type"] == "indicator"}
    assert theirs == ours
    assert validate(out) == []


async def test_import_refuses_what_is_not_a_bundle(client: httpx.AsyncClient) -> None:
    """A body that is not a STIX bundle is a 422 naming the body."""
    owner = await sign_up(client, "stix-bad@example.com")
    org = await create_org(owner, "stix-bad")
    response = await client.post(f"{STIX}/bundles", json={"type": "report"}, headers=owner.in_org(org))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    response = await client.post(f"{STIX}/bundles", content=b"{nope", headers=owner.in_org(org))
    assert response.status_code == 422


async def test_database_rendered_bundle_equals_the_python_rendering(
    client: httpx.AsyncClient, app: Any, database_url: str
) -> None:
    """PostgreSQL renders the bulk export's indicators itself: object for object what render.py makes."""
    if not database_url.startswith("postgresql"):
        pytest.skip("only PostgreSQL renders STIX in the database")
    owner, org, _ids = await _world(client)
    await _post(
        owner,
        org,
        "/api/v1/indicators",
        {
            "value": "odd.example.net",
            "description": 'He said "hi"\n\ttab \\ back — ü 😀',
            "tags": ["Ünïcode", 'q"uote'],
            "valid_from": "2025-01-02T03:04:05.678901Z",
            "valid_until": "2031-01-02T03:04:05.000001Z",
            "attack_techniques": ["T1566", "T1059.001"],
            "classification": "suspicious",
        },
    )
    await _post(owner, org, "/api/v1/indicators", {"value": "http://long.example.com/" + "x" * 260})
    bundle = await _bundle(owner, org)
    assert validate(bundle) == []
    org_id = uuid.UUID(org)
    async with app.state.session_factory() as session:
        await bind_org(session, org_id)
        expected = [o async for batch in export_objects(session, org_id, Selection()) for o in batch]
    assert len(bundle["objects"]) == len(expected)
    assert {o["id"]: o for o in bundle["objects"]} == {o["id"]: o for o in expected}
