"""IOC extraction: recall on report fixtures, defanged forms, false-positive filtering, PDF/HTML, confirm."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import Actor, create_org, sign_up

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sharing"
EXPECTED = json.loads((FIXTURES / "expected_iocs.json").read_text())
EXTRACT = "/api/v1/extract"


@pytest.fixture
async def analyst(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    owner = await sign_up(client, "extract@example.com")
    return owner, await create_org(owner, "extract")


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text is `lines` (written by hand: no PDF writer is a dependency)."""
    text_ops = (
        "BT /F1 10 Tf 40 780 Td 14 TL "
        + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*"
            for line in lines
        )
        + " ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text_ops)} >>\nstream\n{text_ops}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_reports_full_recall_and_no_file_or_version_noise(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], name: str
) -> None:
    actor, org = analyst
    text = (FIXTURES / name).read_text()
    body = {"text": text, "format": "html" if name.endswith(".html") else "text"}
    response = await client.post(EXTRACT, json=body, headers=actor.in_org(org))
    assert response.status_code == 200, response.text
    out = response.json()
    found = {(c["type"], c["value"]) for c in out["candidates"]}
    missing = {tuple(x) for x in EXPECTED[name]} - found
    assert not missing, f"missed {missing}"
    values = {c["value"] for c in out["candidates"]}
    for noise in (
        "readme.txt",
        "setup.exe",
        "invoice_0932.zip",
        "2.4.1.7",
        "10.0.19045.3693",
        "style.css",
        "logo.png",
        "not-an-ioc.example",
        "jquery.min.js",
    ):
        assert noise not in values, f"{noise} should have been filtered"
    assert all(c["known"] is False for c in out["candidates"])
    for c in out["candidates"]:
        assert c["snippet"] and c["occurrences"] >= 1


async def test_defanged_version_and_snippet(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    text = (
        "Beacon to hxxps[:]//evil-c2[.]com/gate.php and 10[.]1[.]2[.]3. The agent version was 1.2.3.4 "
        "and the build 5.6.7.8; see notes.txt. Mail admin[at]evil-c2[.]com."
    )
    out = (await client.post(EXTRACT, json={"text": text}, headers=actor.in_org(org))).json()
    by_value = {c["value"]: c for c in out["candidates"]}
    url = by_value["https://evil-c2.com/gate.php"]
    assert url["type"] == "url" and url["defanged"] is True and "hxxps" in url["raw"]
    assert "Beacon to" in url["snippet"]
    assert by_value["admin@evil-c2.com"]["type"] == "email"
    assert "1.2.3.4" not in by_value and "5.6.7.8" not in by_value and "notes.txt" not in by_value
    reasons = {f["value"]: f["reason"] for f in out["filtered"]}
    assert "version" in reasons["1.2.3.4"]


async def test_known_flag_and_confirm_into_project(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    made = await client.post("/api/v1/indicators", json={"value": "45.61.137.12"}, headers=headers)
    assert made.status_code == 201
    text = (FIXTURES / "report_apt_loader.txt").read_text()
    out = (await client.post(EXTRACT, json={"text": text}, headers=headers)).json()
    known = {c["value"]: c for c in out["candidates"] if c["known"]}
    assert set(known) == {"45.61.137.12"} and known["45.61.137.12"]["indicator_id"] == made.json()["id"]
    project = await client.post("/api/v1/projects", json={"name": "DarkLoader"}, headers=headers)
    project_id = project.json()["id"]
    chosen = [c for c in out["candidates"] if c["type"] in ("domain", "ipv4")]
    confirm = await client.post(
        EXTRACT + "/confirm",
        json={
            "items": [{"value": c["value"], "type": c["type"]} for c in chosen],
            "project_id": project_id,
            "tags": ["darkloader"],
            "tlp": "green",
            "source": "report",
        },
        headers=headers,
    )
    assert confirm.status_code == 200, confirm.text
    result = confirm.json()
    assert result["created"] == len(chosen) - 1 and result["merged"] == 1
    listed = await client.get(
        "/api/v1/indicators", params={"project_id": project_id, "limit": 1000}, headers=headers
    )
    stored = {i["value"]: i for i in listed.json()["items"]}
    assert set(stored) == {c["value"] for c in chosen} - {"45.61.137.12"}
    assert all(i["tags"] == ["darkloader"] and i["tlp"] == "green" for i in stored.values())
    again = (await client.post(EXTRACT, json={"text": text}, headers=headers)).json()
    assert {c["value"] for c in again["candidates"] if c["known"]} == {c["value"] for c in chosen}


async def test_pdf_and_html_upload(client: httpx.AsyncClient, analyst: tuple[Actor, str]) -> None:
    actor, org = analyst
    pdf = minimal_pdf(["C2 server: update-check[.]net", "Stage 2 from 185.243.115[.]84", "Version 2.0.1.3"])
    response = await client.post(
        EXTRACT, files={"file": ("report.pdf", pdf, "application/pdf")}, headers=actor.in_org(org)
    )
    assert response.status_code == 200, response.text
    values = {c["value"] for c in response.json()["candidates"]}
    assert {"update-check.net", "185.243.115.84"} <= values and "2.0.1.3" not in values
    html = (FIXTURES / "report_html.html").read_bytes()
    response = await client.post(
        EXTRACT, files={"file": ("roundup.html", html, "text/html")}, headers=actor.in_org(org)
    )
    values = {c["value"] for c in response.json()["candidates"]}
    assert "microsoft-365-auth.online" in values and "not-an-ioc.example" not in values
    broken = await client.post(
        EXTRACT,
        files={"file": ("x.pdf", b"%PDF-1.4 garbage", "application/pdf")},
        headers=actor.in_org(org),
    )
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "file"


async def test_viewer_may_extract_but_not_confirm(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    viewer = await sign_up(client, "viewer-extract@example.com")
    await client.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=actor.headers,
    )
    ok = await client.post(EXTRACT, json={"text": "evil[.]com"}, headers=viewer.in_org(org))
    assert ok.status_code == 200
    denied = await client.post(
        EXTRACT + "/confirm", json={"items": [{"value": "evil.com"}]}, headers=viewer.in_org(org)
    )
    assert denied.status_code == 403
