"""`raptorflow import` and `raptorflow export` as real processes against the test databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import create_org, sign_up

RAPTORFLOW = [sys.executable, "-m", "raptorflow"]


def _run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
    env.update(RAPTORFLOW_DATABASE_URL=database_url, RAPTORFLOW_LOG_FORMAT="json")
    return subprocess.run([*RAPTORFLOW, *args], capture_output=True, text=True, env=env, timeout=120)


async def test_import_then_export(client: httpx.AsyncClient, app: Any, tmp_path: Path) -> None:
    owner = await sign_up(client, "cli-sharing@example.com")
    org = await create_org(owner, "cli-sharing")
    headers = owner.in_org(org)
    await client.post("/api/v1/projects", json={"name": "Imported"}, headers=headers)
    url = app.state.settings.database_url
    source = tmp_path / "iocs.csv"
    rows = "\n".join(f"198.51.{i // 256}.{i % 256},ipv4,cli" for i in range(3000))
    source.write_text("value,type,tags\n" + rows + "\nnot-valid-value,ipv4,\n")
    done = await asyncio.to_thread(
        _run,
        ["import", str(source), "--org", "cli-sharing", "--project", "Imported", "--tag", "batch-1"],
        url,
    )
    assert done.returncode == 0, done.stderr
    assert "succeeded: 3001 processed, 3000 created, 0 merged, 1 rejected" in done.stdout
    assert "not-valid-value" in done.stderr
    listed = await client.get("/api/v1/indicators", params={"limit": 5, "tag": "batch-1"}, headers=headers)
    first = listed.json()["items"][0]
    assert first["tags"] == ["batch-1", "cli"] and first["project_id"]
    imports = (await client.get("/api/v1/imports", headers=headers)).json()["items"]
    assert imports[0]["created"] == 3000 and imports[0]["status"] == "succeeded"

    # (Each CLI process pays the full import time of the app, so one export run covers the command.)
    out = tmp_path / "rules.txt"
    exported = await asyncio.to_thread(
        _run,
        ["export", "--org", "cli-sharing", "--format", "suricata", "--type", "ipv4", "-o", str(out)],
        url,
    )
    assert exported.returncode == 0, exported.stderr
    assert out.read_text().count("alert ip") == 6000
