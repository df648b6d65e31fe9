"""Console page times on PostgreSQL with a big organization.

Seeds N indicators into one org with COPY (the table owner's connection, like the raw reference of
bench/run.py), plus a few projects and actors through the API, then signs in to the console of a
`raptorflow serve` process and times each main page (sequential requests from another process on
127.0.0.1, so the figure is the server's time plus a loopback round trip). The target is p95 < 200 ms
per page; the dashboard's very first view (before its figures are cached) is shown apart.

    python bench/console.py            # 1,000,000 indicators
    python bench/console.py --quick    # 10,000 (what CI can afford)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_DSN = os.environ.get("RAPTORFLOW_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RAPTORFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
PASSWORD = "benchmark passphrase 1234"
EMAIL = "console-bench@example.com"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TARGET_MS = 200.0
TYPES = ("ipv4", "domain", "url", "sha256", "md5")
CLASSIFICATIONS = ("malicious", "suspicious", "benign", "unknown")
TLPS = ("clear", "green", "amber", "amber", "red")
TAGS = ("apt", "phishing", "botnet", "ransomware", "c2", "scanner")
COLUMNS = [
    "id", "org_id", "type", "value", "classification", "confidence", "score", "tlp", "tags", "sources",
    "description", "attack_techniques", "first_seen", "last_seen", "false_positive", "sightings_count",
    "created_at", "updated_at", "project_id",
]  # fmt: skip


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uuid7(moment: datetime, rnd: random.Random) -> uuid.UUID:
    """A time-ordered id (the app's ids are UUIDv7: index locality follows creation time)."""
    ms = int(moment.timestamp() * 1000)
    value = (ms << 80) | (0x7 << 76) | (rnd.getrandbits(12) << 64) | (0b10 << 62) | rnd.getrandbits(62)
    return uuid.UUID(int=value)


def rows_for(n: int, org: uuid.UUID, projects: list[uuid.UUID], seed: int = 1) -> list[tuple[Any, ...]]:
    """N distinct indicators: mixed types, classifications, scores, TLPs and tags, created over 60 days."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        kind = TYPES[i % len(TYPES)]
        value = {
            "ipv4": f"{10 + i // 16_777_216}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "domain": f"host-{i}.bench{i % 97}.example",
            "url": f"http://drop-{i}.bench.example/{rnd.getrandbits(24):x}",
            "sha256": f"{i:016x}{rnd.getrandbits(192):048x}",
            "md5": f"{i:012x}{rnd.getrandbits(80):020x}",
        }[kind]
        created = now - timedelta(seconds=rnd.randrange(60 * 86_400))
        seen = created + timedelta(seconds=rnd.randrange(86_400))
        tags = json.dumps(rnd.sample(TAGS, rnd.randint(0, 2)))
        project = projects[i % len(projects)] if projects and i % 50 == 0 else None
        out.append(
            (uuid7(created, rnd), org, kind, value, CLASSIFICATIONS[rnd.randrange(4)], rnd.randint(0, 100),
             rnd.randint(0, 100), TLPS[rnd.randrange(5)], tags, '["bench"]', "", "[]", created, seen, False,
             0, created, created, project)
        )  # fmt: skip
    return out


async def seed(dsn: str, org: uuid.UUID, projects: list[uuid.UUID], n: int) -> tuple[float, list[str]]:
    """COPY the rows as the table owner, then VACUUM ANALYZE (what autovacuum does to a table at rest)."""
    rows = rows_for(n, org, projects)
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        for i in range(0, len(rows), 100_000):
            await conn.copy_records_to_table("indicators", records=rows[i : i + 100_000], columns=COLUMNS)
        elapsed = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE indicators")
    finally:
        await conn.close()
    sample = random.Random(2).sample(rows, 200)
    return len(rows) / elapsed, [str(r[0]) for r in sample]


async def tenant(base: str) -> tuple[str, dict[str, str], list[str], list[str]]:
    """Register, create an org, a few projects and actors; returns (org id, API headers, projects, actors)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        register = {"email": EMAIL, "password": PASSWORD, "name": "Bench"}
        (await http.post("/api/v1/auth/register", json=register)).raise_for_status()
        token = (await http.post("/api/v1/auth/token", data={"username": EMAIL, "password": PASSWORD})).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        created = await http.post(
            "/api/v1/organizations", json={"name": "Bench SOC", "slug": "bench"}, headers=auth
        )
        created.raise_for_status()
        org = created.json()["id"]
        h = {**auth, "X-Organization-ID": org}
        projects = []
        for i in range(20):
            made = await http.post("/api/v1/projects", json={"name": f"Operation {i}"}, headers=h)
            made.raise_for_status()
            projects.append(made.json()["id"])
        actors = []
        for i in range(30):
            body = {"name": f"APT-{i}", "country": "XX", "attack_techniques": ["T1059.001", "T1566", "T1105"]}
            made = await http.post("/api/v1/threat-actors", json=body, headers=h)
            made.raise_for_status()
            actors.append(made.json()["id"])
        collection = {"title": "High score", "filter": {"min_score": 80}, "can_read": True}
        (await http.post("/api/v1/taxii-collections", json=collection, headers=h)).raise_for_status()
        return org, h, projects, actors


async def console_session(base: str) -> httpx.AsyncClient:
    """A browser-like client signed in through the console's form."""
    http = httpx.AsyncClient(base_url=base, timeout=120)
    form = await http.get("/login")
    found = CSRF.search(form.text)
    assert found, "no CSRF token on the sign-in page"
    done = await http.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": found.group(1)}
    )
    assert done.status_code == 303, done.text[:300]
    return http


async def timed(http: httpx.AsyncClient, paths: list[str]) -> list[float]:
    """Sequential GETs; milliseconds each (every answer must be a 200 page)."""
    out = []
    for path in paths:
        started = time.perf_counter()
        response = await http.get(path)
        out.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
    return out


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(base: str, n: int, dsn: str, repeat: int) -> list[tuple[str, list[float]]]:
    """Seed, then time every page."""
    org, _h, projects, actors = await tenant(base)
    rate, sample_ids = await seed(dsn, uuid.UUID(org), [uuid.UUID(p) for p in projects], n)
    print(f"seeded {n:,} indicators by COPY at {rate:,.0f} rows/s", flush=True)
    http = await console_session(base)
    o = f"/o/{org}"
    results: list[tuple[str, list[float]]] = []
    try:
        # The first view of a big org must not wait for its figures (they are computed in the background).
        results.append(("dashboard, first view (nothing cached yet)", await timed(http, [o + "/"])))
        deadline = time.monotonic() + 120
        while "reloads itself" in (await http.get(o + "/")).text:
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard figures did not arrive within 120 s")
            await asyncio.sleep(0.5)
        rnd = random.Random(7)
        pages: list[tuple[str, list[str]]] = [
            ("dashboard", [o + "/"] * repeat),
            ("indicators (newest first)", [o + "/indicators"] * repeat),
            ("indicators, sort -score", [o + "/indicators?sort=-score"] * repeat),
            (
                "indicators, classification=malicious, sort -score",
                [o + "/indicators?classification=malicious&sort=-score"] * repeat,
            ),
            (
                "indicators, type=ipv4, sort -last_seen",
                [o + "/indicators?type=ipv4&sort=-last_seen"] * repeat,
            ),
            ("indicators, min_score=90", [o + "/indicators?min_score=90"] * repeat),
            ("indicators, sort type then value", [o + "/indicators?sort=type,value"] * repeat),
            ("indicators, archived only", [o + "/indicators?archived=yes"] * repeat),
            ("indicators, false positives", [o + "/indicators?false_positive=yes"] * repeat),
            ("indicators, tag=ransomware", [o + "/indicators?tag=ransomware"] * repeat),
            ("indicators, search q=bench42", [o + "/indicators?q=bench42"] * repeat),
            ("indicator detail", [o + f"/indicators/{rnd.choice(sample_ids)}" for _ in range(repeat)]),
            ("projects", [o + "/projects"] * repeat),
            ("project detail", [o + f"/projects/{rnd.choice(projects)}" for _ in range(repeat)]),
            ("actors", [o + "/actors"] * repeat),
            ("actor detail", [o + f"/actors/{rnd.choice(actors)}" for _ in range(repeat)]),
            ("settings: TAXII collections", [o + "/settings/taxii"] * repeat),
            ("settings: billing (usage)", [o + "/settings/billing"] * repeat),
        ]
        for name, paths in pages:
            await timed(http, paths[:2])  # warm this page's statements and caches
            results.append((name, await timed(http, paths)))
    finally:
        await http.aclose()
    return results


def main() -> None:
    """Create a database, serve it, seed, time the pages, print the table, drop the database."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 indicators instead of 1,000,000")
    parser.add_argument("--n", type=int, default=None, help="number of indicators (overrides --quick)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 1_000_000)

    db = f"raptorflow_bench_console_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{db}"'))
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")},
        "RAPTORFLOW_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        "RAPTORFLOW_REDIS_URL": REDIS_URL,
        "RAPTORFLOW_LOG_LEVEL": "WARNING",
        "RAPTORFLOW_LOG_FORMAT": "json",
        "RAPTORFLOW_REGISTRATION": "open",
        # Billing on: the billing page then counts usage against the plan (the costlier case).
        "RAPTORFLOW_BILLING_ENABLED": "true",
        "RAPTORFLOW_RATE_LIMIT_PER_MINUTE": "1000000000",
        "RAPTORFLOW_RATE_LIMIT_PRINCIPAL_PER_MINUTE": "1000000000",
        "RAPTORFLOW_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "1000000000",
    }
    server = None
    try:
        subprocess.run(
            [PY, "-m", "raptorflow", "migrate"], env=env, check=True, capture_output=True, cwd=ROOT
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [PY, "-m", "raptorflow", "serve", "--port", str(port), "--workers", "1"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(150):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        results = asyncio.run(measure(base, n, dsn, args.repeat))
        width = max(len(name) for name, _ in results)
        print(f"\nRaptorFlow console — {n:,} indicators in one org, PostgreSQL + Redis, serve --workers 1")
        print(f"sequential GETs over 127.0.0.1; target p95 < {TARGET_MS:.0f} ms\n")
        print(f"{'page':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}  {'n':>3}")
        for name, lat in results:
            flag = "" if pct(lat, 0.95) < TARGET_MS else "  OVER TARGET"
            print(
                f"{name:<{width}}  {statistics.median(lat):8.1f}  {pct(lat, 0.95):8.1f}  {len(lat):>3}{flag}"
            )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
