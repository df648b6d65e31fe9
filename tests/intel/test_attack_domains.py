"""ATT&CK beyond Enterprise: ICS and Mobile bundles beside Enterprise, and Navigator layers per domain."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from raptorflow.intel.attack import loader
from tests.conftest import ATTACK_SAMPLE, create_org, sign_up
from tests.console.test_console import console_login, csrf_of
from tests.intel.test_attack import _run_cli, all_pages, external_id, row_counts, sync, viewer

FIXTURES = ATTACK_SAMPLE.parent
ICS_SAMPLE = FIXTURES / "ics-attack-sample.json"
MOBILE_FIXTURE = FIXTURES / "mobile-attack-fixture.json"
ATTACK = "/api/v1/attack"
SANDWORM = "G0034"
# Used by Sandworm Team in the ICS sample; ICS tactics reuse Enterprise shortnames (execution...).
SANDWORM_ICS = ["T0807", "T0819", "T0884"]
ICS_EXECUTION = "TA0104"


@cache
def _bundle(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


def bundle_bytes(path: Path) -> bytes:
    """A fixture bundle as shipped."""
    return path.read_bytes()


def bundle_json(path: Path) -> dict[str, Any]:
    """A fresh, mutable copy of a fixture bundle."""
    return copy.deepcopy(_bundle(path))


async def sync_both(app: Any) -> None:
    """Enterprise sample, then ICS sample."""
    await sync(app)
    await sync(app, bundle_bytes(ICS_SAMPLE))


async def layer_of(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str) -> Any:
    """The Navigator layer document of an object."""
    answer = await client.get(f"{path}/attack-layer", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def technique_ids(doc: dict[str, Any]) -> list[str]:
    """The technique ids a layer holds."""
    return [t["techniqueID"] for t in doc["techniques"]]


# --- the loader alone ----------------------------------------------------------------------------------


def test_loader_reads_the_domain_and_release_of_each_bundle() -> None:
    ics = loader.parse_bundle(bundle_bytes(ICS_SAMPLE))
    assert (ics.domain, ics.attack_version) == ("ics-attack", "18.1")
    assert {row["domain"] for row in [*ics.objects.values(), *ics.relationships.values()]} == {"ics-attack"}
    mobile = loader.parse_bundle(bundle_bytes(MOBILE_FIXTURE))
    assert (mobile.domain, mobile.attack_version) == ("mobile-attack", "18.1")
    # The Enterprise sample (assembled from mitre/cti) declares no release.
    enterprise = loader.parse_bundle(ATTACK_SAMPLE.read_bytes())
    assert (enterprise.domain, enterprise.attack_version) == ("enterprise-attack", None)
    # Without a matrix, the domain most objects list alone in x_mitre_domains.
    variant = bundle_json(ICS_SAMPLE)
    variant["objects"] = [o for o in variant["objects"] if o["type"] != "x-mitre-matrix"]
    assert loader.parse_bundle(orjson.dumps(variant)).domain == "ics-attack"
    # A domain the Navigator does not know is refused before anything is stored.
    matrix = next(o for o in bundle_json(ICS_SAMPLE)["objects"] if o["type"] == "x-mitre-matrix")
    matrix["external_references"][0]["external_id"] = "pre-attack"
    with pytest.raises(loader.BundleError, match="pre-attack"):
        loader.parse_bundle(orjson.dumps({"type": "bundle", "id": "bundle--x", "objects": [matrix]}))


# --- the catalog -----------------------------------------------------------------------------------------


async def test_ics_beside_enterprise(client: httpx.AsyncClient, app: Any) -> None:
    await sync(app)
    ics = await sync(app, bundle_bytes(ICS_SAMPLE))
    assert ics.domain == "ics-attack" and ics.shown == {
        "tactic": 12,
        "technique": 12,
        "group": 2,
        "software": 2,
    }
    assert "attack sync ics-attack (ATT&CK 18.1): 12 tactics" in ics.line()
    headers = await viewer(client, "attack-ics")

    techniques = await all_pages(client, f"{ATTACK}/techniques", headers, limit=50)
    by_domain: dict[str, set[str]] = {}
    for t in techniques:
        by_domain.setdefault(t["domain"], set()).add(t["id"])
    assert len(by_domain["enterprise-attack"]) == 193 and len(by_domain["ics-attack"]) == 12
    ics_only = await all_pages(client, f"{ATTACK}/techniques", headers, domain="ics-attack")
    assert {t["id"] for t in ics_only} == by_domain["ics-attack"] and set(SANDWORM_ICS) <= by_domain[
        "ics-attack"
    ]
    assert {t["domain"] for t in ics_only} == {"ics-attack"}

    detail = (await client.get(f"{ATTACK}/techniques/t0807", headers=headers)).json()
    assert detail["domain"] == "ics-attack" and detail["name"] == "Command-Line Interface"
    # Its tactic is ICS Execution (TA0104), not Enterprise Execution (TA0002) of the same shortname.
    assert [(t["id"], t["domain"]) for t in detail["tactic_refs"]] == [(ICS_EXECUTION, "ics-attack")]
    assert SANDWORM in [g["id"] for g in detail["groups"]]
    wrong = await client.get(
        f"{ATTACK}/techniques/T0807", params={"domain": "enterprise-attack"}, headers=headers
    )
    assert wrong.status_code == 404 and "enterprise-attack" in wrong.json()["detail"]

    by_tactic = await all_pages(client, f"{ATTACK}/techniques", headers, tactic=ICS_EXECUTION)
    assert by_tactic and {t["domain"] for t in by_tactic} == {"ics-attack"}
    tactics = (await client.get(f"{ATTACK}/tactics", params={"domain": "ics-attack"}, headers=headers)).json()
    assert len(tactics["items"]) == 12 and {t["id"][:4] for t in tactics["items"]} == {"TA01"}
    every_tactic = (await client.get(f"{ATTACK}/tactics", headers=headers)).json()["items"]
    assert [t["domain"] for t in every_tactic] == ["enterprise-attack"] * 14 + ["ics-attack"] * 12

    # A group published in both domains is listed once, with both, and its detail spans them.
    groups = await all_pages(client, f"{ATTACK}/groups", headers)
    assert [g["domains"] for g in groups if g["id"] == SANDWORM] == [["enterprise-attack", "ics-attack"]]
    assert [g["domains"] for g in groups if g["id"] == "G1000"] == [["ics-attack"]]
    ics_groups = await all_pages(client, f"{ATTACK}/groups", headers, domain="ics-attack")
    assert sorted(g["id"] for g in ics_groups) == [SANDWORM, "G1000"]
    sandworm = (await client.get(f"{ATTACK}/groups/{SANDWORM}", headers=headers)).json()
    used = {t["id"]: t["domain"] for t in sandworm["techniques"]}
    assert {tid: used[tid] for tid in SANDWORM_ICS} == dict.fromkeys(SANDWORM_ICS, "ics-attack")
    assert "enterprise-attack" in used.values()
    bad = await client.get(f"{ATTACK}/techniques", params={"domain": "ics"}, headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "domain" in str(bad.json()["errors"][0]["field"])


async def test_each_domain_syncs_on_its_own(client: httpx.AsyncClient, app: Any) -> None:
    await sync_both(app)
    both = await row_counts(app)
    # Loading Enterprise again leaves ICS as it was (it used to hide the ICS relationships of groups
    # published in both domains as "no longer in the bundle").
    again = await sync(app)
    assert (again.withdrawn, again.withdrawn_relationships) == (0, 0)
    ics_again = await sync(app, bundle_bytes(ICS_SAMPLE))
    assert (ics_again.withdrawn, ics_again.withdrawn_relationships) == (0, 0)
    assert await row_counts(app) == both
    headers = await viewer(client, "attack-resync")
    sandworm = (await client.get(f"{ATTACK}/groups/{SANDWORM}", headers=headers)).json()
    assert set(SANDWORM_ICS) <= {t["id"] for t in sandworm["techniques"]}

    # An ICS bundle without Sandworm hides the ICS copy only: the Enterprise one stays.
    variant = bundle_json(ICS_SAMPLE)
    gone = {o["id"] for o in variant["objects"] if external_id(o) == SANDWORM}
    its_uses = [o for o in variant["objects"] if o.get("source_ref") in gone]
    variant["objects"] = [o for o in variant["objects"] if o["id"] not in gone and o not in its_uses]
    withdrawn = await sync(app, orjson.dumps(variant))
    assert withdrawn.withdrawn == 1 and withdrawn.withdrawn_relationships == len(its_uses) == 5
    sandworm = (await client.get(f"{ATTACK}/groups/{SANDWORM}", headers=headers)).json()
    assert sandworm["domains"] == ["enterprise-attack"] and not set(SANDWORM_ICS) & {
        t["id"] for t in sandworm["techniques"]
    }
    groups = await all_pages(client, f"{ATTACK}/groups", headers, domain="ics-attack")
    assert [g["id"] for g in groups] == ["G1000"]


# --- Navigator layers ------------------------------------------------------------------------------------


async def test_layers_follow_the_domain_of_their_techniques(client: httpx.AsyncClient, app: Any) -> None:
    await sync_both(app)
    headers = await viewer(client, "attack-layers")
    mixed = ["T1059.001", "T1105", *SANDWORM_ICS]
    actor = await client.post(
        "/api/v1/threat-actors", json={"name": "Mixed", "attack_techniques": mixed}, headers=headers
    )
    assert actor.status_code == 201, actor.text
    path = f"/api/v1/threat-actors/{actor.json()['id']}"

    # Default: the domain of most of its techniques (3 ICS against 2 Enterprise), and only those.
    doc = await layer_of(client, path, headers)
    assert doc["domain"] == "ics-attack" and technique_ids(doc) == SANDWORM_ICS
    assert doc["versions"]["attack"] == "18"
    assert doc["metadata"] == [
        {
            "name": "enterprise-attack",
            "value": "2 more technique(s): ask for this layer with ?domain=enterprise-attack",
        }
    ]
    enterprise = await layer_of(client, path, headers, domain="enterprise-attack")
    assert enterprise["domain"] == "enterprise-attack"
    assert technique_ids(enterprise) == ["T1059", "T1059.001", "T1105"]
    assert enterprise["metadata"][0]["name"] == "ics-attack"
    mobile = await layer_of(client, path, headers, domain="mobile-attack")
    assert mobile["domain"] == "mobile-attack" and mobile["techniques"] == []
    bad = await client.get(f"{path}/attack-layer", params={"domain": "ICS"}, headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "domain" in str(bad.json()["errors"][0]["field"])

    # Campaigns and reports holding ICS techniques only open the ICS matrix.
    campaign = await client.post(
        "/api/v1/campaigns", json={"name": "Grid", "attack_techniques": ["T0884", "T0807"]}, headers=headers
    )
    report = await client.post(
        "/api/v1/reports", json={"title": "Grid report", "attack_techniques": ["T0819"]}, headers=headers
    )
    for created, base in ((campaign, "/api/v1/campaigns"), (report, "/api/v1/reports")):
        assert created.status_code == 201, created.text
        doc = await layer_of(client, f"{base}/{created.json()['id']}", headers)
        assert doc["domain"] == "ics-attack" and all(t.startswith("T08") for t in technique_ids(doc))
        assert "metadata" not in doc

    # Sandworm imported from the catalog carries both domains' techniques: one layer each.
    imported = await client.post(f"/api/v1/threat-actors/from-attack/{SANDWORM}", headers=headers)
    assert imported.status_code == 201, imported.text
    assert set(SANDWORM_ICS) <= set(imported.json()["attack_techniques"])
    path = f"/api/v1/threat-actors/{imported.json()['id']}"
    default = await layer_of(client, path, headers)
    assert default["domain"] == "enterprise-attack" and not set(SANDWORM_ICS) & set(technique_ids(default))
    ics = await layer_of(client, path, headers, domain="ics-attack")
    assert ics["domain"] == "ics-attack" and technique_ids(ics) == SANDWORM_ICS


async def test_layer_version_follows_the_loaded_release(client: httpx.AsyncClient, app: Any) -> None:
    older = bundle_json(ICS_SAMPLE)
    next(o for o in older["objects"] if o["type"] == "x-mitre-collection")["x_mitre_version"] = "17.1"
    await sync(app, orjson.dumps(older))
    headers = await viewer(client, "attack-version")
    campaign = await client.post(
        "/api/v1/campaigns", json={"name": "Old grid", "attack_techniques": ["T0807"]}, headers=headers
    )
    assert campaign.status_code == 201, campaign.text
    doc = await layer_of(client, f"/api/v1/campaigns/{campaign.json()['id']}", headers)
    assert doc["domain"] == "ics-attack" and doc["versions"]["attack"] == "17"


async def test_cli_loads_three_domains(client: httpx.AsyncClient, app: Any) -> None:
    done = _run_cli(
        ["sync", "--file", str(ATTACK_SAMPLE), "--file", str(ICS_SAMPLE), "--file", str(MOBILE_FIXTURE)],
        app.state.settings.database_url,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "attack sync enterprise-attack",
        "attack sync ics-attack (ATT&CK 18.1)",
        "attack sync mobile-attack (ATT&CK 18.1)",
    ]
    headers = await viewer(client, "attack-mobile")
    sandworm = (await client.get(f"{ATTACK}/groups/{SANDWORM}", headers=headers)).json()
    assert sandworm["domains"] == ["enterprise-attack", "mobile-attack", "ics-attack"]
    tracking = (await client.get(f"{ATTACK}/techniques/T1430", headers=headers)).json()
    assert tracking["domain"] == "mobile-attack"
    assert [t["id"] for t in tracking["tactic_refs"]] == ["TA0035"]
    actor = await client.post(
        "/api/v1/threat-actors",
        json={"name": "Phone", "attack_techniques": ["T1430", "T1660", "T0807"]},
        headers=headers,
    )
    assert actor.status_code == 201, actor.text
    doc = await layer_of(client, f"/api/v1/threat-actors/{actor.json()['id']}", headers)
    assert doc["domain"] == "mobile-attack" and technique_ids(doc) == ["T1430", "T1660"]


async def test_console_matrix_shows_the_domain_of_the_objects_techniques(
    client: httpx.AsyncClient, app: Any
) -> None:
    """An actor with ICS techniques gets the ICS matrix (ICS tactics, its techniques marked), and an actor
    with Enterprise techniques the Enterprise one: ICS reuses tactic shortnames, so one matrix would mix."""
    await sync_both(app)
    owner = await sign_up(client, "matrix-domains@example.com")
    org = await create_org(owner, "matrix-domains")
    await console_login(client, "matrix-domains@example.com")
    token = csrf_of((await client.get(f"/o/{org}/")).text)
    pages = {}
    for name, techniques in (("ICS actor", ", ".join(SANDWORM_ICS)), ("IT actor", "T1059.001")):
        made = await client.post(
            f"/o/{org}/actors",
            data={"name": name, "attack_techniques": techniques, "tlp": "amber", "csrf_token": token},
        )
        assert made.status_code == 303, made.text
        matrix = await client.get(made.headers["location"] + "/attack")
        assert matrix.status_code == 200
        pages[name] = matrix.text
    assert "Inhibit Response Function" in pages["ICS actor"] and "Reconnaissance" not in pages["ICS actor"]
    assert all(t in pages["ICS actor"] for t in SANDWORM_ICS)
    assert "Reconnaissance" in pages["IT actor"] and "Inhibit Response Function" not in pages["IT actor"]
