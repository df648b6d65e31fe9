"""RaptorFlow benchmarks: lookups, batch lookups, bulk create and search on PostgreSQL.

Each figure is printed beside a reference measured in the same run on the same machine:
a bare route (`/health`, same server, same middleware) for HTTP figures, a raw COPY of the same rows
for ingestion. Load comes from other processes (wrk; a separate Python client process).

    make bench                 # 1,000,000 indicators in one org + 100,000 in a second
    make bench ARGS=--quick    # 10,000 + 1,000 (what CI runs so the bench never rots)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_DSN = os.environ.get("RAPTORFLOW_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RAPTORFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "benchmark passphrase 1234"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def indicator_values(n: int, seed: int) -> list[str]:
    """A realistic mix: IPv4 45%, domains 25%, URLs 10%, SHA-256 15%, MD5 5%."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        r = rnd.random()
        if r < 0.45:
            out.append(
                f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
            )
        elif r < 0.70:
            out.append(
                f"{rnd.choice(['login', 'cdn', 'mail', 'update', 'api'])}-{i}-{rnd.getrandbits(24):x}.example{rnd.randint(0, 99)}.com"
            )
        elif r < 0.80:
            out.append(f"http://host{i}.example.net/{rnd.getrandbits(32):x}/payload.bin")
        elif r < 0.95:
            out.append(f"{rnd.getrandbits(256):064x}")
        else:
            out.append(f"{rnd.getrandbits(128):032x}")
    # Random IPs and hashes can repeat; a bench of N indicators needs N distinct values.
    return list(dict.fromkeys(out))


def run_wrk(
    url: str, headers: dict[str, str], connections: int, seconds: int, script: str | None
) -> dict[str, float]:
    """Run wrk with latency output; parse requests/s and p50/p99 in ms."""
    args = [
        "wrk",
        "-t",
        "2" if connections > 1 else "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
    ]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        for pct in ("50%", "99%"):
            if line.startswith(pct):
                value = line.split()[1]
                ms = (
                    float(value[:-2])
                    if value.endswith("ms")
                    else (float(value[:-2]) / 1000 if value.endswith("us") else float(value[:-1]) * 1000)
                )
                result["p" + pct[:-1]] = ms
        if "Non-2xx" in line:
            result["non2xx"] = float(line.split()[-1])
    return result


async def raw_copy_reference(dsn: str, values: list[str]) -> float:
    """Rows/s of COPY of the same rows into a copy of the indicators table with all its indexes."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        # The same table: every index, constraint and default of `indicators` (no RLS, no triggers).
        await conn.execute("CREATE TABLE bench_copy (LIKE indicators INCLUDING ALL)")
        org = uuid.uuid4()
        now = datetime.now(UTC)
        columns = [
            "id", "org_id", "type", "value", "classification", "confidence", "score", "tlp", "tags", "sources",
            "description", "attack_techniques", "first_seen", "last_seen", "false_positive", "sightings_count",
            "created_at", "updated_at",
        ]  # fmt: skip
        rows = [
            (uuid.uuid4(), org, "x", v, "unknown", 50, 60, "amber", '["bench"]', '["bench"]', "", "[]", now, now,
             False, 0, now, now)
            for v in values
        ]  # fmt: skip
        started = time.perf_counter()
        await conn.copy_records_to_table("bench_copy", records=rows, columns=columns)
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_copy")
        return len(rows) / elapsed
    finally:
        await conn.close()


async def kept_state(dsn: str) -> str | None:
    """The API key of a kept database's first org, once that database has been loaded (--keep)."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_state') IS NOT NULL"):
            return None
        return str(await conn.fetchval("SELECT api_key FROM bench_state"))
    finally:
        await conn.close()


async def admin_on(dsn: str, sql: str) -> None:
    """One statement as the database owner (maintenance the app role may not run)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bulk_load(base: str, headers: dict[str, str], values: list[str], concurrency: int) -> float:
    """Create indicators over HTTP, 1,000 per request, `concurrency` requests in flight; rows/s."""
    chunks = [values[i : i + 1000] for i in range(0, len(values), 1000)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            body = {"items": [{"value": v, "tags": ["bench"], "source": "bench", "score": 60} for v in chunk]}
            response = await http.post(base + "/api/v1/indicators/bulk", json=body, headers=headers)
            response.raise_for_status()
            if response.json()["rejected"]:
                raise RuntimeError(f"bulk rejected items: {response.text[:300]}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return len(values) / (time.perf_counter() - started)


async def timed_requests(
    base: str, headers: dict[str, str], requests: list[tuple[str, str, Any]]
) -> list[float]:
    """Sequential requests; latency of each in ms."""
    out = []
    async with httpx.AsyncClient(timeout=60) as http:
        for method, path, payload in requests:
            started = time.perf_counter()
            response = await http.request(method, base + path, headers=headers, **payload)
            out.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def setup_tenant(base: str, email: str, slug: str) -> tuple[str, str]:
    """Register, sign in, create an org and an editor API key; returns (org id, key)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        (
            await http.post(
                "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Bench"}
            )
        ).raise_for_status()
        token = (
            await http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        org = (
            await http.post("/api/v1/organizations", json={"name": slug, "slug": slug}, headers=auth)
        ).json()["id"]
        key = (
            await http.post(
                f"/api/v1/organizations/{org}/api-keys",
                json={"name": "bench", "role": "editor"},
                headers=auth,
            )
        ).json()["secret"]
        return org, key


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 + 1,000 indicators, short wrk runs")
    parser.add_argument("--seconds", type=int, default=None, help="duration of each wrk run")
    parser.add_argument(
        "--keep",
        metavar="DB",
        default=None,
        help="use and keep this database: loaded on the first run, reused (no bulk figure) on the next ones",
    )
    parser.add_argument(
        "--only",
        default="lookup,batch,search",
        help="read figures to measure, comma-separated among lookup,batch,search (default: all)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    n_main, n_other = (10_000, 1_000) if args.quick else (1_000_000, 100_000)
    seconds = args.seconds or (3 if args.quick else 10)
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (make bench installs it with apt-get)")

    db = args.keep or f"raptorflow_bench_{uuid.uuid4().hex[:8]}"
    admin_loop = asyncio.new_event_loop()

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def exists() -> bool:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db))
        finally:
            await conn.close()

    if not (args.keep and admin_loop.run_until_complete(exists())):
        admin_loop.run_until_complete(admin(f'CREATE DATABASE "{db}"'))
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {
        **os.environ,
        "RAPTORFLOW_DATABASE_URL": url,
        "RAPTORFLOW_REDIS_URL": REDIS_URL,
        "RAPTORFLOW_LOG_LEVEL": "WARNING",
        "RAPTORFLOW_LOG_FORMAT": "json",
        "RAPTORFLOW_REGISTRATION": "open",
        # Rate limiting stays on (Redis, every request counted) with limits no bench run reaches.
        "RAPTORFLOW_RATE_LIMIT_PER_MINUTE": "1000000000",
        "RAPTORFLOW_RATE_LIMIT_PRINCIPAL_PER_MINUTE": "1000000000",
    }
    server = None
    try:
        subprocess.run([PY, "-m", "raptorflow", "migrate"], env=env, check=True, capture_output=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [PY, "-m", "raptorflow", "serve", "--port", str(port), "--workers", "2"],
            env=env,
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
        loop = asyncio.new_event_loop()
        values = indicator_values(n_main, 1)
        other = indicator_values(n_other, 2)
        rows: list[tuple[str, str, str]] = []
        state = loop.run_until_complete(kept_state(dsn)) if args.keep else None
        if state is not None:
            key = state
            print(f"bench: reusing the data of database {db} (no bulk figure)", file=sys.stderr)
        else:
            _org, key = loop.run_until_complete(setup_tenant(base, "bench@example.com", "bench"))
            _org2, key2 = loop.run_until_complete(setup_tenant(base, "bench2@example.com", "bench-two"))
            copy_rate = loop.run_until_complete(raw_copy_reference(dsn, values))
            bulk_rate = loop.run_until_complete(bulk_load(base, {"X-API-Key": key}, values, concurrency=4))
            loop.run_until_complete(bulk_load(base, {"X-API-Key": key2}, other, concurrency=4))
            rows.append(
                (
                    "bulk create over HTTP (1,000/request, 4 in flight)",
                    f"{bulk_rate:,.0f} indicators/s",
                    f"raw COPY, same rows, same indexed table: {copy_rate:,.0f} rows/s ({bulk_rate / copy_rate:.0%})",
                    "target ≥ 40,000/s",
                )
            )
            # What autovacuum does within a minute of a large load (statistics, GIN pending lists), done
            # now so the read figures below are those of settled data rather than of the load's tail.
            loop.run_until_complete(admin_on(dsn, "VACUUM ANALYZE indicators"))
            if args.keep:
                loop.run_until_complete(
                    admin_on(dsn, f"CREATE TABLE bench_state AS SELECT '{key}'::text AS api_key")
                )
        headers = {"X-API-Key": key}

        lookup_lua = Path(tempfile.mkdtemp()) / "lookup.lua"
        sample = random.Random(3).sample(values, 2000)
        lookup_lua.write_text(
            "local values = {" + ",".join(json.dumps(v) for v in sample) + "}\n"
            "local i = 0\nrequest = function()\n  i = i + 1\n"
            "  return wrk.format('GET', '/api/v1/lookup?value=' .. values[(i % #values) + 1])\nend\n"
        )
        for conns in (4, 32) if "lookup" in only else ():
            bare = run_wrk(base + "/health", {}, conns, seconds, None)
            look = run_wrk(base + "/api/v1/lookup", headers, conns, seconds, str(lookup_lua))
            ratio = look["rps"] / bare["rps"] * 100
            rows.append(
                (
                    f"single lookup, {conns} connections",
                    f"{look['rps']:,.0f} req/s, p50 {look['p50']:.2f} ms, p99 {look['p99']:.2f} ms"
                    + (f", non-2xx {look['non2xx']:.0f}" if look.get("non2xx") else ""),
                    f"bare /health: {bare['rps']:,.0f} req/s, p99 {bare['p99']:.2f} ms ({ratio:.0f}%)",
                    "target ≥ 40% at 32" if conns == 32 else "target p99 < 5 ms",
                )
            )

        if "batch" in only:
            # 20 different batches of 10,000 known values (nothing a cache of the previous batch could answer).
            pick = random.Random(4)
            batches = [pick.sample(values, min(10_000, len(values))) for _ in range(20)]
            lat = loop.run_until_complete(
                timed_requests(
                    base, headers, [("POST", "/api/v1/lookup", {"json": {"values": b}}) for b in batches]
                )
            )
            rows.append(
                (
                    "batch lookup, 10,000 values",
                    f"p50 {statistics.median(lat):.0f} ms, p95 {pct(lat, 0.95):.0f} ms",
                    f"{10_000 / (statistics.median(lat) / 1000):,.0f} values/s",
                    "target < 100 ms",
                )
            )

        if "search" in only:
            rnd = random.Random(5)
            terms = [rnd.choice(values)[3:9] for _ in range(100)] + ["login", "payload", "example7", "cdn-9"]
            search = [("GET", "/api/v1/indicators/search", {"params": {"q": t, "limit": 50}}) for t in terms]
            lat = loop.run_until_complete(timed_requests(base, headers, search))
            rows.append(
                (
                    "substring search, first page of 50",
                    f"p50 {statistics.median(lat):.1f} ms, p95 {pct(lat, 0.95):.1f} ms",
                    f"{len(terms)} terms",
                    "target p95 < 50 ms",
                )
            )

        width = max(len(r[0]) for r in rows)
        print(
            f"\nRaptorFlow bench — {n_main:,} indicators (+{n_other:,} in a second org), PostgreSQL + Redis, serve --workers 2\n"
        )
        for name, figure, reference, target in rows:
            print(f"{name:<{width}}  {figure}\n{'':<{width}}  reference: {reference}; {target}")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if not args.keep:
            admin_loop.run_until_complete(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
