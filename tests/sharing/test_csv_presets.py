"""CSV feeds as published: URLhaus, ThreatFox and Feodo Tracker files imported with no options or a preset."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from raptorflow.sharing.imports.presets import PRESET_NAMES, PRESETS
from tests.conftest import Actor, create_org, sign_up
from tests.console.test_console import console_login, csrf_of
from tests.sharing.test_imports import IMP, finished, indicators

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sharing"
URLHAUS = (FIXTURES / "urlhaus_recent.csv").read_text()
THREATFOX = (FIXTURES / "threatfox_recent.csv").read_text()
FEODO = (FIXTURES / "feodo_ipblocklist.csv").read_text()


@pytest.fixture
async def analyst(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    owner = await sign_up(client, "feeds-csv@example.com")
    return owner, await create_org(owner, "csv-feeds")


async def imported(
    client: httpx.AsyncClient, actor: Actor, org: str, content: str, **options: Any
) -> dict[str, Any]:
    """Import CSV text through the API and wait for the outcome."""
    body = {"format": "csv", "content": content, "filename": "feed.csv", **options}
    response = await client.post(IMP, json=body, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    return await finished(client, actor, org, response.json()["id"])


def data_rows(text: str) -> str:
    """The rows of a published file without its comment preamble and header."""
    return "".join(line + "\n" for line in text.splitlines() if line and not line.startswith("#"))


async def test_urlhaus_file_as_published_imports_with_no_options(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    done = await imported(client, actor, org, URLHAUS)
    assert done["status"] == "succeeded", done
    assert (done["processed"], done["created"], done["rejected"]) == (4, 4, 0), done
    stored = await indicators(client, actor, org)
    mozi = stored["http://182.117.30.71:43811/bin.sh"]
    assert mozi["type"] == "url" and mozi["classification"] == "malicious"
    assert mozi["tags"] == ["malware_download", "32-bit", "elf", "mips", "mozi"]
    assert mozi["first_seen"].startswith("2026-11-30T10:12:44") and mozi["sources"] == ["abuse.ch URLhaus"]
    assert "https://urlhaus.abuse.ch/url/3312045/" in mozi["description"]
    # An offline URL keeps when it was last online; one without tags gets no `none` tag.
    offline = stored["http://45.95.147.230/x86"]
    assert offline["last_seen"].startswith("2026-11-30T01:05:11")
    assert offline["first_seen"].startswith("2026-11-29T22:41:17")
    assert stored["http://malvertise.example.net/load.php?id=77"]["tags"] == ["malware_download"]


async def test_threatfox_file_quoted_with_comma_space_and_ip_port(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    done = await imported(client, actor, org, THREATFOX, tags=["threatfox"])
    assert done["status"] == "succeeded", done
    assert (done["processed"], done["created"], done["rejected"]) == (6, 5, 1), done
    assert done["rejections"][0]["line"] == 15
    assert "sha3_384_hash" in done["rejections"][0]["reason"]
    stored = await indicators(client, actor, org)
    assert set(stored) == {
        "203.0.113.45",
        "login-verify.example-secure.com",
        "http://198.51.100.77/dl/payload.exe",
        "6ced73ce7aa4c1557ce870b2e9328b37",
        "0d9c38909e8ef455956e82cf3d61d892e25627d07e78151ff275944f5e9f11d5",
    }
    c2 = stored["203.0.113.45"]
    assert c2["type"] == "ipv4" and c2["confidence"] == 100 and c2["classification"] == "malicious"
    assert c2["tags"] == [
        "threatfox",
        "botnet_cc",
        "malware:cobalt strike",
        "c2",
        "cobaltstrike",
        "port:8443",
    ]
    assert "Cobalt Strike" in c2["description"]
    assert "https://infosec.exchange/@example/113557" in c2["description"]
    lumma = stored["login-verify.example-secure.com"]
    assert lumma["type"] == "domain" and lumma["confidence"] == 75
    assert lumma["tags"] == ["threatfox", "botnet_cc", "malware:lumma stealer"]  # `None` tags are no tag
    assert lumma["last_seen"].startswith("2026-11-30T10:05:00")
    assert "None" not in lumma["description"]
    assert stored["6ced73ce7aa4c1557ce870b2e9328b37"]["type"] == "md5"
    sha = stored["0d9c38909e8ef455956e82cf3d61d892e25627d07e78151ff275944f5e9f11d5"]
    assert sha["type"] == "sha256" and "malware:agent tesla" in sha["tags"]
    # The port is searchable as a tag.
    by_port = await indicators(client, actor, org, tag="port:8443")
    assert list(by_port) == ["203.0.113.45"]


async def test_feodo_file_keeps_every_port_of_an_address(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    done = await imported(client, actor, org, FEODO, source="feodo-nightly", classification="suspicious")
    assert done["status"] == "succeeded", done
    assert (done["processed"], done["created"], done["merged"], done["rejected"]) == (4, 3, 1, 0), done
    stored = await indicators(client, actor, org)
    emotet = stored["198.51.100.200"]
    assert emotet["tags"] == ["malware:emotet", "port:8080", "port:7080"]
    assert emotet["last_seen"].startswith("2026-11-30") and emotet["first_seen"].startswith(
        "2026-11-12T08:01:55"
    )
    # The import's own options win over what the layout implies.
    assert emotet["sources"] == ["feodo-nightly"] and emotet["classification"] == "suspicious"
    assert stored["203.0.113.18"]["description"] == "Feodo Tracker botnet C2 (QakBot)"
    assert stored["192.0.2.61"]["last_seen"].startswith("2026-10-15")


async def test_preset_reads_rows_without_a_header_and_refuses_a_column_mapping(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    # The rows alone (header and preamble cut off): the preset knows the published column order.
    done = await imported(client, actor, org, data_rows(FEODO), preset="feodo")
    assert (done["status"], done["created"], done["merged"]) == ("succeeded", 3, 1), done
    assert "port:2222" in (await indicators(client, actor, org))["192.0.2.61"]["tags"]

    upload = await client.post(
        IMP,
        files={"file": ("tf.csv", data_rows(THREATFOX).encode(), "text/csv")},
        data={"options": json.dumps({"preset": "threatfox", "confidence": 10})},
        headers=headers,
    )
    assert upload.status_code == 202, upload.text
    done = await finished(client, actor, org, upload.json()["id"])
    assert (done["status"], done["created"], done["rejected"]) == ("succeeded", 5, 1), done

    mixed = await client.post(
        IMP,
        json={"format": "csv", "content": FEODO, "preset": "feodo", "csv": {"value_column": "dst_ip"}},
        headers=headers,
    )
    assert mixed.status_code == 422 and mixed.headers["content-type"] == "application/problem+json"
    assert mixed.json()["errors"][0]["field"] == "csv.value_column"
    wrong = await client.post(
        IMP, json={"format": "text", "content": FEODO, "preset": "feodo"}, headers=headers
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "preset"
    unknown = await client.post(
        IMP, json={"format": "csv", "content": FEODO, "preset": "spamhaus"}, headers=headers
    )
    assert unknown.status_code == 422 and "preset" in unknown.json()["errors"][0]["field"]
    # A file whose header is not the preset's fails with the reason.
    other = await imported(client, actor, org, "value,type\n192.0.2.1,ipv4\n", preset="urlhaus")
    assert other["status"] == "failed" and "'url'" in other["error"]


async def test_published_file_named_txt_is_read_as_csv(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    # URLhaus serves its CSV dump as `csv.txt`; the header, not the name, decides.
    upload = await client.post(
        IMP, files={"file": ("csv.txt", URLHAUS.encode(), "text/plain")}, headers=actor.in_org(org)
    )
    assert upload.status_code == 202 and upload.json()["format"] == "csv", upload.text
    done = await finished(client, actor, org, upload.json()["id"])
    assert (done["status"], done["created"]) == ("succeeded", 4), done


@pytest.mark.parametrize(
    ("fmt", "content", "reason"),
    [
        ("csv", "value,type\nnot a value,\n10.0.0.999,ipv4\n", "cannot tell the type"),
        ("text", "# list\nbad..domain\nnot a value\n", "line 2"),
        ("misp", {"Event": {"Attribute": [{"type": "comment", "value": "hello"}]}}, "not imported"),
    ],
)
async def test_import_where_every_record_is_rejected_fails_with_the_reason(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], fmt: str, content: Any, reason: str
) -> None:
    actor, org = analyst
    response = await client.post(IMP, json={"format": fmt, "content": content}, headers=actor.in_org(org))
    assert response.status_code == 202, response.text
    done = await finished(client, actor, org, response.json()["id"])
    assert done["status"] == "failed", done
    assert done["error"].startswith("every record was rejected") and reason in done["error"], done
    assert done["rejected"] == done["processed"] > 0 and done["rejections"]
    # Nothing to import at all (an empty published list) is no failure.
    empty = await imported(client, actor, org, "# END 0 entries\n")
    assert (empty["status"], empty["processed"]) == ("succeeded", 0), empty


def test_every_preset_name_has_a_layout() -> None:
    assert set(PRESETS) == set(PRESET_NAMES)


async def test_console_import_form_offers_presets_and_a_column_mapping(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "console-csv@example.com")
    org = await create_org(owner, "console-csv")
    await console_login(client, "console-csv@example.com")
    form = (await client.get(f"/o/{org}/imports")).text
    assert '<select id="i-preset" name="preset"' in form and '<option value="threatfox"' in form
    assert 'name="csv_value_column"' in form and 'name="csv_delimiter"' in form
    token = csrf_of(form)
    started = await client.post(
        f"/o/{org}/imports",
        data={"csrf_token": token, "preset": "threatfox"},
        files={"file": ("recent.csv", data_rows(THREATFOX).encode(), "text/csv")},
    )
    assert started.status_code == 303, started.text
    mapped = await client.post(
        f"/o/{org}/imports",
        data={
            "csrf_token": token,
            "csv_value_column": "address",
            "csv_tags_column": "labels",
            "csv_delimiter": ";",
        },
        files={"file": ("partner.csv", b"labels;address\nscanner;192.0.2.44\n", "text/csv")},
    )
    assert mapped.status_code == 303, mapped.text
    for location in (started.headers["location"], mapped.headers["location"]):
        for _ in range(100):
            if "100%" in (await client.get(location)).text:
                break
            await asyncio.sleep(0.05)
    stored = await indicators(client, owner, org)
    assert stored["192.0.2.44"]["tags"] == ["scanner"]
    assert "malware:cobalt strike" in stored["203.0.113.45"]["tags"]
    refused = await client.post(
        f"/o/{org}/imports",
        data={"csrf_token": token, "preset": "feodo", "csv_value_column": "dst_ip"},
        files={"file": ("ipblocklist.csv", FEODO.encode(), "text/csv")},
    )
    assert refused.status_code == 422
    assert 'id="err-csv_value_column"' in refused.text and 'value="dst_ip"' in refused.text


def _cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
    env.update(RAPTORFLOW_DATABASE_URL=database_url, RAPTORFLOW_LOG_FORMAT="json")
    command = [sys.executable, "-m", "raptorflow", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


async def test_cli_import_with_a_preset_and_with_a_column_mapping(
    client: httpx.AsyncClient, app: Any, tmp_path: Path
) -> None:
    owner = await sign_up(client, "cli-csv@example.com")
    org = await create_org(owner, "cli-csv")
    url = app.state.settings.database_url
    rows = tmp_path / "feodo-rows.csv"
    rows.write_text(data_rows(FEODO))
    done = await asyncio.to_thread(_cli, ["import", str(rows), "--org", "cli-csv", "--preset", "feodo"], url)
    assert done.returncode == 0, done.stderr
    assert "succeeded: 4 processed, 3 created, 1 merged, 0 rejected" in done.stdout
    partner = tmp_path / "partner.csv"
    partner.write_text("labels|address\nscanner|192.0.2.45\nnot-an-ip|999.1.1.1\n")
    done = await asyncio.to_thread(
        _cli,
        [
            *("import", str(partner), "--org", "cli-csv", "--delimiter", "|"),
            *("--column", "value=address", "--column", "tags=labels", "--column", "type=1"),
        ],
        url,
    )
    # Column 1 (the address) read as the type: every row is refused, so the command fails and says why.
    assert done.returncode == 1 and "every record was rejected (2 of 2)" in done.stderr, done.stderr
    bad = await asyncio.to_thread(
        _cli, ["import", str(partner), "--org", "cli-csv", "--column", "valu=address"], url
    )
    assert bad.returncode == 2 and "csv.valu_column" in bad.stderr, bad.stderr
    done = await asyncio.to_thread(
        _cli,
        [
            "import",
            str(partner),
            "--org",
            "cli-csv",
            "--delimiter",
            "|",
            "--column",
            "value=address",
            "--column",
            "tags=labels",
        ],
        url,
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded: 2 processed, 1 created, 0 merged, 1 rejected" in done.stdout
    stored = await indicators(client, owner, org)
    assert stored["192.0.2.45"]["tags"] == ["scanner"]
    assert stored["198.51.100.200"]["tags"] == ["malware:emotet", "port:8080", "port:7080"]
