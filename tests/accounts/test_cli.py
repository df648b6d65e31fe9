"""Operator commands: user create, org create, keys rotate, audit verify — real processes, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, sign_in

RAPTORFLOW = [sys.executable, "-m", "raptorflow"]


def _run(args: list[str], database_url: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
    env.update(
        RAPTORFLOW_DATABASE_URL=database_url, RAPTORFLOW_LOG_FORMAT="json", RAPTORFLOW_REGISTRATION="closed"
    )
    return subprocess.run(
        [*RAPTORFLOW, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


async def test_operator_bootstraps_an_install(client: httpx.AsyncClient, app: Any) -> None:
    url = app.state.settings.database_url
    if url.startswith("sqlite"):
        # Seven processes per backend; the commands run the same services on both (tested through the
        # API on SQLite), and the embedded default's CLI is covered by tests/system/test_cli.py.
        pytest.skip("the operator commands run as processes on the PostgreSQL leg")
    made = _run(
        ["user", "create", "--email", "Root@Example.com", "--name", "Root", "--password-stdin"],
        url,
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    user_id = made.stdout.strip()
    weak = _run(
        ["user", "create", "--email", "weak@example.com", "--name", "W", "--password-stdin"],
        url,
        stdin="short\n",
    )
    assert weak.returncode == 1 and "password" in weak.stderr
    org = _run(
        ["org", "create", "--name", "Root Org", "--slug", "root-org", "--owner", "root@example.com"], url
    )
    assert org.returncode == 0, org.stderr
    org_id = org.stdout.strip()
    missing = _run(["org", "create", "--name", "X", "--slug", "x-org", "--owner", "ghost@example.com"], url)
    assert missing.returncode == 1 and "ghost@example.com" in missing.stderr
    bad_slug = _run(
        ["org", "create", "--name", "X", "--slug", "Bad Slug", "--owner", "root@example.com"], url
    )
    assert bad_slug.returncode == 2 and "slug" in bad_slug.stderr

    root = await sign_in(client, "root@example.com", PASSWORD, user_id)
    got = await client.get(f"/api/v1/organizations/{org_id}", headers=root.headers)
    assert got.status_code == 200 and got.json()["role"] == "owner"

    rotated = _run(["keys", "rotate"], url)
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.strip()
    await app.state.token_issuer.reload(force=True)
    # The token issued before the rotation still works; new ones carry the new key id.
    assert (await client.get("/api/v1/users/me", headers=root.headers)).status_code == 200
    again = await sign_in(client, "root@example.com", PASSWORD, user_id)
    assert again.tokens["access_token"] and new_kid in (await client.get("/.well-known/jwks.json")).text

    verified = _run(["audit", "verify"], url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chains verified" in verified.stderr
    assert org_id in verified.stdout
