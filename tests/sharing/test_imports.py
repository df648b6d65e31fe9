"""Imports: CSV/text/MISP through a job, merge rules, rejections, progress fields, cancel, uploads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Actor, create_org, sign_up

IMP = "/api/v1/imports"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sharing"


@pytest.fixture
async def analyst(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    owner = await sign_up(client, "import@example.com")
    return owner, await create_org(owner, "imports")


async def finished(client: httpx.AsyncClient, actor: Actor, org: str, import_id: str) -> dict[str, Any]:
    """Poll an import until it is over."""
    for _ in range(400):
        body = (await client.get(f"{IMP}/{import_id}", headers=actor.in_org(org))).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"import still {body['status']}")


async def indicators(client: httpx.AsyncClient, actor: Actor, org: str, **params: Any) -> dict[str, Any]:
    """The org's indicators by value."""
    listed = await client.get(
        "/api/v1/indicators", params={"limit": 1000, **params}, headers=actor.in_org(org)
    )
    return {i["value"]: i for i in listed.json()["items"]}


CSV = """# exported by a partner
indicator,type,tags,confidence,description
185.243.115.84,ipv4,c2;tlp:green,90,stage two
hxxp://evil[.]example/login,url,phishing,,
update-check[.]net,,c2,70,
not a value,,,,
10.0.0.999,ipv4,,,
evil.example,domain,c2,101,
update-check.net,,dup,30,
"""


async def test_csv_import_creates_merges_and_rejects(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    project = (await client.post("/api/v1/projects", json={"name": "Partner"}, headers=headers)).json()["id"]
    body = {
        "format": "csv",
        "content": CSV,
        "filename": "partner.csv",
        "project_id": project,
        "tags": ["partner"],
        "tlp": "amber",
        "source": "partner-feed",
    }
    response = await client.post(IMP, json=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"{IMP}/{response.json()['id']}"
    assert response.json()["job_id"]
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "succeeded", done
    # The repeated update-check.net row counts as merged into the first.
    assert (done["created"], done["merged"], done["rejected"]) == (3, 1, 3)
    assert done["processed"] == done["total"] == 7
    reasons = {r["line"]: r for r in done["rejections"]}
    assert set(reasons) == {6, 7, 8}
    assert "confidence" in reasons[8]["reason"]
    stored = await indicators(client, actor, org)
    ip = stored["185.243.115.84"]
    assert ip["project_id"] == project and ip["tlp"] == "green" and ip["confidence"] == 90
    assert ip["tags"] == ["partner", "c2"] and ip["sources"] == ["partner-feed"]
    assert ip["description"] == "stage two"
    assert stored["http://evil.example/login"]["type"] == "url"
    # Duplicate rows fold (tags union, confidence max).
    assert stored["update-check.net"]["tags"] == ["partner", "c2", "dup"]
    assert stored["update-check.net"]["confidence"] == 70

    again = await client.post(
        IMP,
        json={
            **body,
            "content": "value\n185.243.115.84\nnew.example.org\n",
            "tags": ["second"],
            "source": "other",
            "confidence": 95,
        },
        headers=headers,
    )
    done = await finished(client, actor, org, again.json()["id"])
    assert (done["created"], done["merged"], done["rejected"]) == (1, 1, 0)
    merged = (await indicators(client, actor, org))["185.243.115.84"]
    assert merged["tags"] == ["partner", "c2", "second"]
    assert merged["sources"] == ["partner-feed", "other"] and merged["confidence"] == 95
    history = await client.get(f"/api/v1/indicators/{merged['id']}/history", headers=headers)
    assert history.json()["items"][0]["action"] == "merged"


async def test_text_upload_with_guessed_format(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    text = "# blocklist\n\n1.2.3.4\n5.6.7.8 # scanner\n// c-style comment\nbad..domain\n"
    response = await client.post(
        IMP,
        files={"file": ("block.txt", text.encode(), "text/plain")},
        data={"options": json.dumps({"tags": ["blocklist"], "confidence": 60})},
        headers=actor.in_org(org),
    )
    assert response.status_code == 202, response.text
    assert response.json()["format"] == "text"
    done = await finished(client, actor, org, response.json()["id"])
    assert (done["created"], done["rejected"]) == (2, 1)
    stored = await indicators(client, actor, org)
    assert set(stored) == {"1.2.3.4", "5.6.7.8"} and stored["5.6.7.8"]["confidence"] == 60


async def test_misp_event_import(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    event = json.loads((FIXTURES / "misp_event.json").read_text())
    response = await client.post(IMP, json={"format": "misp", "content": event}, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "succeeded"
    stored = await indicators(client, actor, org)
    assert stored["198.51.100.23"]["tlp"] == "green"
    assert "apt-demo" in stored["198.51.100.23"]["tags"]
    assert stored["c2.misp-demo.net"]["type"] == "domain"
    assert stored["invoice.doc"]["type"] == "filename"
    assert stored["0123456789abcdef0123456789abcdef"]["type"] == "md5"
    assert done["rejected"] == 1 and "not imported" in done["rejections"][0]["reason"]


async def test_bad_input_and_cancel(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    bad = await client.post(
        IMP,
        json={"format": "csv", "content": "x", "project_id": "00000000-0000-7000-8000-000000000000"},
        headers=headers,
    )
    assert bad.status_code == 404 and bad.json()["errors"][0]["field"] == "project_id"
    bad = await client.post(IMP, json={"format": "zip", "content": "x"}, headers=headers)
    assert bad.status_code == 422
    bad = await client.post(IMP, json={"format": "text", "content": "x", "type": "nonsense"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "type"
    empty = await client.post(IMP, files={"file": ("a.txt", b"", "text/plain")}, headers=headers)
    assert empty.status_code == 422
    ok = await client.post(IMP, json={"format": "text", "content": "9.9.9.9\n"}, headers=headers)
    done = await finished(client, actor, org, ok.json()["id"])
    again = await client.post(f"{IMP}/{done['id']}/cancel", headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    listed = await client.get(IMP, headers=headers)
    assert [i["id"] for i in listed.json()["items"]] == [done["id"]]
    other = await sign_up(client, "other-import@example.com")
    other_org = await create_org(other, "other-imports")
    hidden = await client.get(f"{IMP}/{done['id']}", headers=other.in_org(other_org))
    assert hidden.status_code == 404


async def test_stix_import_through_the_stix_mapping(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    bundle = {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2024-01-01T00:00:00.000Z",
                "modified": "2024-01-01T00:00:00.000Z",
                "pattern": "[ipv4-addr:value = '203.0.113.77']",
                "pattern_type": "stix",
                "valid_from": "2024-01-01T00:00:00Z",
            }
        ],
    }
    response = await client.post(IMP, json={"format": "stix", "content": bundle}, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["created"] == 1
    stored = await indicators(client, actor, org)
    assert stored["203.0.113.77"]["stix_id"] == "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    again = await client.post(IMP, json={"format": "stix", "content": bundle}, headers=actor.in_org(org))
    done = await finished(client, actor, org, again.json()["id"])
    assert (done["created"], done["merged"]) == (0, 1)
    broken = await client.post(
        IMP, json={"format": "stix", "content": {"type": "nope"}}, headers=actor.in_org(org)
    )
    failed = await finished(client, actor, org, broken.json()["id"])
    assert failed["status"] == "failed" and "bundle" in failed["error"]


async def test_uploads_larger_than_the_default_body_limit(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    big = b"# " + b"x" * (11 * 1024 * 1024) + b"\n192.0.2.99\n"
    response = await client.post(
        IMP,
        files={"file": ("big.txt", big, "text/plain")},
        data={"format": "text"},
        headers=actor.in_org(org),
    )
    assert response.status_code == 202, response.text
    assert response.json()["size_bytes"] == len(big)
    done = await finished(client, actor, org, response.json()["id"])
    assert (done["status"], done["created"]) == ("succeeded", 1)


async def test_cancel_stops_a_running_or_queued_import(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    lines = "".join(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}\n" for i in range(60_000))
    response = await client.post(
        IMP, files={"file": ("many.txt", lines.encode(), "text/plain")}, headers=headers
    )
    assert response.status_code == 202
    cancel = await client.post(f"{IMP}/{response.json()['id']}/cancel", headers=headers)
    assert cancel.status_code == 200
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "cancelled", done
    stats = (await client.get("/api/v1/indicators/stats", headers=headers)).json()
    assert stats["total"] < 60_000


async def test_csv_import_merged_in_parts_counts_and_folds_like_one_merge(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than one merge part (PostgreSQL): a value repeated across parts still folds into one."""
    from raptorflow.sharing.imports import service as import_service

    monkeypatch.setattr(import_service, "CHUNK", 64)  # one record batch per 64 bytes uploaded
    monkeypatch.setattr(import_service, "MERGE_ROWS", 2)
    merges = []
    real_merge = import_service.PgStaging.merge

    async def counted_merge(self: Any, **kwargs: Any) -> tuple[int, int]:
        merges.append(1)
        return await real_merge(self, **kwargs)

    monkeypatch.setattr(import_service.PgStaging, "merge", counted_merge)
    actor, org = analyst
    lines = ["value,tags", "first.example.com,early"]
    lines += [f"host-{n}.example.org,bulk" for n in range(12)]
    lines += ["first.example.com,late;tlp:red", "bad value,", "198.51.100.1,bulk"]
    body = {"format": "csv", "content": "\n".join(lines) + "\n", "filename": "parts.csv", "tags": ["feed"]}
    response = await client.post(IMP, json=body, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert (done["created"], done["merged"], done["rejected"]) == (14, 1, 1)
    assert done["processed"] == 16
    stored = await indicators(client, actor, org)
    assert len(stored) == 14
    assert stored["first.example.com"]["tags"] == ["feed", "early", "late"]
    assert stored["host-11.example.org"]["tags"] == ["feed", "bulk"]
    assert len(merges) > 2 or not merges  # several merges on PostgreSQL; SQLite takes the bulk path
