"""RaptorFlow benchmarks: lookups, batch lookups, bulk create and search on PostgreSQL.

Each figure is printed beside a reference measured in the same run on the same machine (see
bench/reference.py): a raw COPY of the same rows (the app's types and ids, single-stream and with the
path's concurrency, alternating rounds on a settled database, medians) for the bulk create; a bare
route (`/health`, same server, same middleware) for single lookups; the SQL the app runs, alone
through asyncpg on the same keys and terms, for batch lookups and search. Load comes from other
processes (wrk; this process as the HTTP client).

Single lookups are measured as production sends them (values drawn from the whole data set by each
wrk thread with its own seed, one in five unknown, ten organizations each with its own key) and, as
a second figure, on a hot set (2,000 known values of one org, one key, both threads walking one list).

    make bench                 # 1,000,000 indicators in one org + 100,000 over nine others
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
from urllib.parse import quote

import asyncpg
import httpx
from reference import (
    CHUNK,
    Rounds,
    check_same_rows,
    copy_rows,
    create_reference_table,
    reference_rows,
    settle,
)
from sqlalchemy import event

from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.config import Settings
from raptorflow.intel.indicators.normalize import normalize
from raptorflow.intel.indicators.service import IndicatorService
from raptorflow.intel.lookup.repository import matches_on_pool
from raptorflow.intel.lookup.service import LAST_PARTS
from raptorflow.kit.db import create_engine, session_factory
from raptorflow.kit.tenancy import ORG_SETTING, bind_org

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_DSN = os.environ.get("RAPTORFLOW_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RAPTORFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "benchmark passphrase 1234"
ORGS = 10  # organizations, each with its own API key, for the production-like lookups
BULK_CONCURRENCY = 4  # bulk requests in flight (two per server worker)
LOOKUP_POOL = 200_000  # known values drawn from the whole data set for the production-like lookups
BATCHES = 20
SEARCH_LIMIT = 50


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


async def kept_state(dsn: str) -> list[tuple[uuid.UUID, str]] | None:
    """The (org id, API key) of each org of a kept database, once it has been loaded (--keep)."""
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_state') IS NOT NULL"):
            return None
        if not await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'bench_state' AND column_name = 'org_id'"
        ):
            sys.exit("bench: this kept database predates ten-org lookups; drop it and load it again")
        rows = await conn.fetch("SELECT org_id, api_key FROM bench_state ORDER BY position")
        return [(uuid.UUID(r[0]), r[1]) for r in rows]
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
    """Create indicators over HTTP, 1,000 per request, `concurrency` requests in flight; seconds."""
    chunks = [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]
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
        return time.perf_counter() - started


def session_cpu(session: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a session (the server's)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields after "pid (comm)": state, ppid, pgrp, session, ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def setup_tenants(base: str, n: int) -> list[tuple[uuid.UUID, str]]:
    """Register a user, create `n` orgs with an editor API key each; returns [(org id, key)]."""
    email = "bench@example.com"
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
        out = []
        for i in range(n):
            slug = "bench" if i == 0 else f"bench-{i + 1}"
            created = await http.post(
                "/api/v1/organizations", json={"name": slug, "slug": slug}, headers=auth
            )
            created.raise_for_status()
            org = created.json()["id"]
            key = await http.post(
                f"/api/v1/organizations/{org}/api-keys",
                json={"name": "bench", "role": "editor"},
                headers=auth,
            )
            key.raise_for_status()
            out.append((uuid.UUID(org), key.json()["secret"]))
        return out


async def bulk_rounds(
    dsn: str, base: str, org: uuid.UUID, key: str, values: list[str], rounds: Rounds, server: int
) -> float:
    """The bulk create (4 requests in flight) against COPY of the same rows, single-stream and on 4
    connections: each round adds one slice of the values to each table, so the tables grow alike."""
    slices = [values[i :: rounds.rounds] for i in range(rounds.rounds)]
    tables = {"copy, 1 stream": "bench_copy_1", f"copy, {BULK_CONCURRENCY} streams": "bench_copy_n"}
    server_cpu: list[float] = []
    conn = await asyncpg.connect(dsn)
    try:
        for table in tables.values():
            await create_reference_table(conn, table)
    finally:
        await conn.close()

    async def timed(round_no: int, name: str) -> float:
        part = slices[round_no]
        await settle(dsn, ["indicators", *tables.values()])
        if name == "bulk over HTTP":
            before = session_cpu(server)
            seconds = await bulk_load(base, {"X-API-Key": key}, part, BULK_CONCURRENCY)
            server_cpu.append(session_cpu(server) - before)
            return seconds
        # As the bulk path stores them: the bench's tags, source and score; the key has no user.
        rows = reference_rows(part, org, tags=lambda _i: ["bench"], sources=["bench"], score=60)
        return await copy_rows(dsn, tables[name], rows, 1 if name == "copy, 1 stream" else BULK_CONCURRENCY)

    await rounds.run(["bulk over HTTP", *tables], timed, lambda r: len(slices[r]))
    for table in tables.values():
        await check_same_rows(dsn, "indicators", f"org_id = '{org}'", table)
        await admin_on(dsn, f"DROP TABLE {table}")
    return sum(server_cpu) / len(values)


def lookup_pool(
    folder: Path, loaded: list[tuple[int, list[str]]], size: int, seed: int
) -> tuple[Path, float]:
    """A file of `org index<TAB>url-quoted value` lines for the production-like lookups: known values
    drawn uniformly from the whole data set (each with its org), plus a quarter as many values no org
    holds, each with a random org (one lookup in five misses). Returns the file and its miss share."""
    rnd = random.Random(seed)
    everything = [(org, value) for org, values in loaded for value in values]
    hits = rnd.sample(everything, min(size, len(everything)))
    known = {value for _org, value in everything}
    unknown = [v for v in indicator_values(len(hits), seed + 1) if v not in known][: len(hits) // 4]
    misses = [(rnd.randrange(len(loaded)), v) for v in unknown]
    pool = hits + misses
    rnd.shuffle(pool)
    path = folder / "lookup-pool.tsv"
    path.write_text("".join(f"{org + 1}\t{quote(value, safe='')}\n" for org, value in pool))
    return path, len(misses) / len(pool)


async def check_pool(base: str, lines: list[str], keys: list[str], miss_share: float) -> None:
    """Raise unless the pool's first 400 lookups, sent as wrk will send them, miss about as often as
    intended (a key paired with the wrong org would turn hits into misses)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        found = 0
        for line in lines:
            org, value = line.split("\t")
            response = await http.get(
                f"/api/v1/lookup?value={value}", headers={"X-API-Key": keys[int(org) - 1]}
            )
            response.raise_for_status()
            found += bool(response.json()["found"])
    missed = 1 - found / len(lines)
    if abs(missed - miss_share) > 0.08:
        raise RuntimeError(f"bench: the lookup pool misses {missed:.0%} of the time, not {miss_share:.0%}")


def production_lua(folder: Path, pool: Path, keys: list[str], seed: int) -> Path:
    """A wrk script: each thread seeds its own generator (wrk gives each its own Lua state), reads the
    pool and draws every request's (org key, value) at random, so threads never walk one sequence."""
    script = folder / "lookup-production.lua"
    script.write_text(
        "local keys = {" + ",".join(json.dumps(k) for k in keys) + "}\n"
        "local orgs, values, n, threads = {}, {}, 0, 0\n"
        "function setup(thread)\n  threads = threads + 1\n"
        f"  thread:set('seed', {seed} + 7919 * threads)\nend\n"
        "function init(args)\n  math.randomseed(seed)\n"
        f"  for line in io.lines({json.dumps(str(pool))}) do\n"
        "    local tab = line:find('\\t', 1, true)\n    n = n + 1\n"
        "    orgs[n] = tonumber(line:sub(1, tab - 1))\n    values[n] = line:sub(tab + 1)\n  end\nend\n"
        "function request()\n  local i = math.random(n)\n"
        "  return wrk.format('GET', '/api/v1/lookup?value=' .. values[i], {['X-API-Key'] = keys[orgs[i]]})\n"
        "end\n"
    )
    return script


def hot_set_lua(folder: Path, values: list[str]) -> Path:
    """The hot-set wrk script: 2,000 known values of one org cycled in one order by both threads."""
    script = folder / "lookup-hot.lua"
    sample = random.Random(3).sample(values, min(2000, len(values)))
    script.write_text(
        "local values = {" + ",".join(json.dumps(quote(v, safe="")) for v in sample) + "}\n"
        "local i = 0\nrequest = function()\n  i = i + 1\n"
        "  return wrk.format('GET', '/api/v1/lookup?value=' .. values[(i % #values) + 1])\nend\n"
    )
    return script


async def app_connections(dsn: str, org: uuid.UUID, n: int) -> list[asyncpg.Connection]:
    """Connections as the app's role (row-level security on), bound to the org for the session: where
    the references run the app's statements alone."""
    role = Settings(_env_file=None).database_app_role
    conns = []
    for _ in range(n):
        conn = await asyncpg.connect(dsn)
        if role:
            await conn.execute(f"SET ROLE {role}")
        await conn.execute(f"SELECT set_config('{ORG_SETTING}', $1, false)", str(org))
        conns.append(conn)
    return conns


async def batch_figures(
    dsn: str, base: str, org: uuid.UUID, key: str, batches: list[list[str]]
) -> tuple[list[float], list[float], list[float]]:
    """Latencies (ms) of each batch over HTTP and of the app's batch function alone on the same keys:
    in one statement, and in LAST_PARTS statements at once (one per core, as the app sends the bulk of
    a batch). Path and references alternate which goes first."""
    conns = await app_connections(dsn, org, LAST_PARTS)
    path_ms, one_ms, parts_ms = [], [], []
    try:
        async with httpx.AsyncClient(timeout=60, headers={"X-API-Key": key}) as http:
            for number, batch in enumerate(batches):
                keys = list(dict.fromkeys((n.type.value, n.value) for n in map(normalize, batch)))
                types, values = [k[0] for k in keys], [k[1] for k in keys]
                size = -(-len(keys) // LAST_PARTS)

                async def path() -> None:
                    started = time.perf_counter()
                    response = await http.post(base + "/api/v1/lookup", json={"values": batch})  # noqa: B023
                    path_ms.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()

                async def one() -> None:
                    started = time.perf_counter()
                    await matches_on_pool(conns[0], org, types, values, datetime.now(UTC), False)  # noqa: B023
                    one_ms.append((time.perf_counter() - started) * 1000)

                async def parts() -> None:
                    started = time.perf_counter()
                    now = datetime.now(UTC)
                    await asyncio.gather(
                        *(
                            matches_on_pool(c, org, types[i : i + size], values[i : i + size], now, False)  # noqa: B023
                            for c, i in zip(conns, range(0, len(keys), size), strict=False)  # noqa: B023
                        )
                    )
                    parts_ms.append((time.perf_counter() - started) * 1000)

                steps = [path, one, parts]
                for step in steps if number % 2 == 0 else reversed(steps):
                    await step()
    finally:
        for conn in conns:
            await conn.close()
    return path_ms, one_ms, parts_ms


async def search_statements(url: str, org: uuid.UUID, terms: list[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """The statement (and its parameters) the app's search runs for each term, recorded from the
    indicator service itself on its own engine, so the reference replays exactly what the app sends."""
    engine = create_engine(url, role=Settings(_env_file=None).database_app_role or None)
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "raptorflow_search_indicators" in statement:
            seen.append((statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    out = []
    try:
        async with session_factory(engine)() as session:
            await bind_org(session, org)
            service = IndicatorService(
                session, OrgContext(principal=Principal(user_id=None), org_id=org, role=Role.viewer)
            )
            for term in terms:
                seen.clear()
                await service.search(term, SEARCH_LIMIT, None)
                if len(seen) != 1:
                    raise RuntimeError(f"search {term!r} ran {len(seen)} search statements, expected one")
                out.append(seen[0])
            await session.rollback()
    finally:
        await engine.dispose()
    return out


async def search_figures(
    dsn: str, url: str, base: str, org: uuid.UUID, key: str, terms: list[str]
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of each search's first page over HTTP and of the app's statement alone (asyncpg,
    app role, org bound for the session), alternating which goes first."""
    statements = await search_statements(url, org, terms)
    (conn,) = await app_connections(dsn, org, 1)
    path_ms, ref_ms = [], []
    try:
        async with httpx.AsyncClient(timeout=60, headers={"X-API-Key": key}) as http:
            for number, (term, (statement, params)) in enumerate(zip(terms, statements, strict=True)):

                async def path() -> None:
                    started = time.perf_counter()
                    response = await http.get(
                        base + "/api/v1/indicators/search",
                        params={"q": term, "limit": SEARCH_LIMIT},  # noqa: B023
                    )
                    path_ms.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()

                async def reference() -> None:
                    started = time.perf_counter()
                    await conn.fetch(statement, *params)  # noqa: B023
                    ref_ms.append((time.perf_counter() - started) * 1000)

                steps = [path, reference]
                for step in steps if number % 2 == 0 else reversed(steps):
                    await step()
    finally:
        await conn.close()
    return path_ms, ref_ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 + 1,000 indicators, short wrk runs")
    parser.add_argument("--seconds", type=int, default=None, help="duration of each wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of bulk create and COPY (at least 3)"
    )
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
    if args.rounds < 3:
        parser.error("--rounds: at least 3 (medians of alternating rounds)")
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
    folder = Path(tempfile.mkdtemp(prefix="raptorflow-bench-"))
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
        # The second data set spread over the nine other orgs (the first holds the main one).
        others = [other[i :: ORGS - 1] for i in range(ORGS - 1)]
        rows: list[tuple[str, str, str, str]] = []
        state = loop.run_until_complete(kept_state(dsn)) if args.keep else None
        if state is not None:
            tenants = state
            print(f"bench: reusing the data of database {db} (no bulk figure)", file=sys.stderr)
        else:
            tenants = loop.run_until_complete(setup_tenants(base, ORGS))
            rounds = Rounds(args.rounds)
            cpu_per_row = loop.run_until_complete(
                bulk_rounds(dsn, base, tenants[0][0], tenants[0][1], values, rounds, server.pid)
            )
            path = rounds.median("bulk over HTTP")
            single = rounds.median("copy, 1 stream")
            parallel = rounds.median(f"copy, {BULK_CONCURRENCY} streams")
            rows.append(
                (
                    f"bulk create over HTTP (1,000/request, {BULK_CONCURRENCY} in flight)",
                    rounds.describe("bulk over HTTP", "indicators/s")
                    + f"; server workers' CPU {cpu_per_row * 1e6:.0f} µs per row, against "
                    f"{2e6 / path:.0f} µs per row of the 2 cores' wall time",
                    f"COPY of the same rows (app's types and UUIDv7 ids) into a copy of `indicators` (indexes, "
                    f"constraints, foreign keys), {args.rounds} alternating rounds on a settled database: "
                    f"1 stream {rounds.describe('copy, 1 stream', 'rows/s')} ({path / single:.0%}); "
                    f"{BULK_CONCURRENCY} streams of 1,000-row COPYs "
                    f"{rounds.describe(f'copy, {BULK_CONCURRENCY} streams', 'rows/s')} ({path / parallel:.0%})",
                    "target ≥ 40,000/s",
                )
            )
            for (_org, key), part in zip(tenants[1:], others, strict=True):
                loop.run_until_complete(bulk_load(base, {"X-API-Key": key}, part, BULK_CONCURRENCY))
            # What autovacuum does within a minute of a large load (statistics, GIN pending lists), done
            # now so the read figures below are those of settled data rather than of the load's tail.
            loop.run_until_complete(settle(dsn, ["indicators"]))
            if args.keep:
                loop.run_until_complete(
                    admin_on(
                        dsn,
                        "CREATE TABLE bench_state AS SELECT * FROM (VALUES "
                        + ", ".join(f"({i}, '{org}', '{key}')" for i, (org, key) in enumerate(tenants))
                        + ") AS t(position, org_id, api_key)",
                    )
                )
        org, key = tenants[0]
        keys = [k for _org, k in tenants]

        if "lookup" in only:
            pool, miss_share = lookup_pool(folder, [(0, values), *enumerate(others, start=1)], LOOKUP_POOL, 6)
            loop.run_until_complete(check_pool(base, pool.read_text().splitlines()[:400], keys, miss_share))
            production = production_lua(folder, pool, keys, random.randrange(1 << 30))
            hot = hot_set_lua(folder, values)
            for conns in (4, 32):
                bare = run_wrk(base + "/health", {}, conns, seconds, None)
                prod = run_wrk(base + "/api/v1/lookup", {}, conns, seconds, str(production))
                look = run_wrk(base + "/api/v1/lookup", {"X-API-Key": key}, conns, seconds, str(hot))
                production_label = (
                    f"single lookup, {conns} connections, production mix ({ORGS} orgs and keys, values "
                    f"drawn from all data by each thread, {miss_share:.0%} unknown)"
                )
                hot_label = (
                    f"single lookup, {conns} connections, hot set (2,000 known values, one org and key, "
                    "both threads walking one list)"
                )
                for label, figures in ((production_label, prod), (hot_label, look)):
                    rows.append(
                        (
                            label,
                            f"{figures['rps']:,.0f} req/s, p50 {figures['p50']:.2f} ms, p99 {figures['p99']:.2f} ms"
                            + (f", non-2xx {figures['non2xx']:.0f}" if figures.get("non2xx") else ""),
                            f"bare /health: {bare['rps']:,.0f} req/s, p99 {bare['p99']:.2f} ms "
                            f"({figures['rps'] / bare['rps']:.0%})",
                            "target ≥ 40% at 32" if conns == 32 else "target p99 < 5 ms",
                        )
                    )

        if "batch" in only:
            # 20 disjoint batches of known values (--quick: 500 each), so no batch repeats another's keys.
            shuffled = random.Random(4).sample(values, len(values))
            size = min(10_000, len(values) // BATCHES)
            batches = [shuffled[i * size : (i + 1) * size] for i in range(BATCHES)]
            path_ms, one_ms, parts_ms = loop.run_until_complete(batch_figures(dsn, base, org, key, batches))
            p50, one, parts = (
                statistics.median(path_ms),
                statistics.median(one_ms),
                statistics.median(parts_ms),
            )
            rows.append(
                (
                    f"batch lookup, {size:,} values ({BATCHES} different batches)",
                    f"p50 {p50:.0f} ms, p95 {pct(path_ms, 0.95):.0f} ms ({size / (p50 / 1000):,.0f} values/s)",
                    f"raptorflow_lookup_json alone on the same keys (asyncpg, app role): one statement "
                    f"p50 {one:.0f} ms ({p50 / one:.2f}x), {LAST_PARTS} statements at once p50 {parts:.0f} ms "
                    f"({p50 / parts:.2f}x)",
                    "target < 100 ms",
                )
            )

        if "search" in only:
            rnd = random.Random(5)
            terms = [rnd.choice(values)[3:9] for _ in range(100)] + ["login", "payload", "example7", "cdn-9"]
            path_ms, ref_ms = loop.run_until_complete(search_figures(dsn, url, base, org, key, terms))
            rows.append(
                (
                    f"substring search, first page of {SEARCH_LIMIT} ({len(terms)} terms)",
                    f"p50 {statistics.median(path_ms):.1f} ms, p95 {pct(path_ms, 0.95):.1f} ms",
                    f"the app's search statement alone on the same terms (asyncpg, app role): "
                    f"p50 {statistics.median(ref_ms):.1f} ms, p95 {pct(ref_ms, 0.95):.1f} ms",
                    "target p95 < 50 ms",
                )
            )

        print(
            f"\nRaptorFlow bench — {n_main:,} indicators (+{n_other:,} over {ORGS - 1} other orgs), "
            "PostgreSQL + Redis, serve --workers 2\n"
        )
        for name, figure, reference, target in rows:
            print(f"{name}\n    {figure}\n    reference: {reference}; {target}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if not args.keep:
            admin_loop.run_until_complete(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
