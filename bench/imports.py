"""Import benchmark: a CSV of 1,000,000 indicators imported end to end on PostgreSQL, beside a raw COPY.

Also a STIX 2.1 bundle of 100,000 indicators imported the same way (target ≥ 15,000 objects/s).

End to end = what `raptorflow import` does: the file is stored in the database in 1 MB chunks, then the
import job reads it back, parses and normalizes every row, COPYs the rows into a staging table and merges
them into `indicators` (INSERT … SELECT … ON CONFLICT, as the app role, under row-level security). The
reference is a COPY of the rows the import stores (the app's types, UUIDv7 ids; bench/reference.py) into
a copy of `indicators` with its indexes, constraints and foreign keys: single-stream, as the import
writes (one transaction), and on two connections (both cores). Import and references alternate over
`--rounds` rounds, each into an empty table on a settled database; figures are medians. Each contender
runs in its own child process; the import's peak RSS is that process's own.

    .venv/bin/python bench/imports.py           # 1,000,000 rows, STIX 100,000
    .venv/bin/python bench/imports.py --quick   # 20,000 rows, STIX 5,000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import Rounds, check_same_rows, copy_rows, create_reference_table, reference_rows, settle
from run import ADMIN_DSN, PY, indicator_values

from raptorflow.config import Settings
from raptorflow.intel.indicators.normalize import normalize
from raptorflow.kit.db import create_engine, session_factory
from raptorflow.sharing.imports import operator as import_operator
from raptorflow.sharing.imports.schemas import ImportOptions
from raptorflow.sharing.stix.patterns import build

TARGET_RATE = 50_000
TARGET_SHARE = 1 / 3
TARGET_RSS_MB = 500
TARGET_STIX_RATE = 15_000


def write_csv(path: Path, values: list[str]) -> None:
    """A CSV with a header, a type column left empty (detected) and a tag per row."""
    with path.open("w") as out:
        out.write("value,type,tags\n")
        for i, value in enumerate(values):
            out.write(f"{value},,batch-{i % 10}\n")


def _write_values(path: Path, n: int) -> None:
    write_csv(path, indicator_values(n, seed=7))


def _write_bundle(path: Path, n: int) -> None:
    """A STIX 2.1 bundle of n indicators (simple patterns, as producers send them) and its identity."""
    creator = "identity--" + str(uuid.UUID(int=7, version=4))
    objects: list[dict[str, Any]] = [
        {"type": "identity", "spec_version": "2.1", "id": creator, "created": "2024-01-01T00:00:00.000Z",
         "modified": "2024-01-01T00:00:00.000Z", "name": "Bench producer", "identity_class": "organization"}
    ]  # fmt: skip
    for i, value in enumerate(indicator_values(n, seed=11)):
        normal = normalize(value)
        objects.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--" + str(uuid.UUID(int=i + 1, version=4)),
                "created_by_ref": creator,
                "created": "2024-05-01T10:00:00.000Z",
                "modified": "2024-05-01T10:00:00.000Z",
                "name": value,
                "indicator_types": ["malicious-activity"],
                "pattern": build(normal.type.value, normal.value),
                "pattern_type": "stix",
                "valid_from": "2024-05-01T10:00:00Z",
                "labels": [f"batch-{i % 10}"],
                "confidence": 70,
            }
        )
    path.write_bytes(
        orjson.dumps({"type": "bundle", "id": "bundle--" + str(uuid.uuid4()), "objects": objects})
    )


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run a raptorflow command; exit with its stderr when it fails."""
    done = subprocess.run(
        [PY, "-m", "raptorflow", *args], env=env, input=stdin, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"bench: raptorflow {' '.join(args)} failed: {done.stderr.strip()}")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def import_path(url: str, path: Path, fmt: str) -> dict[str, Any]:
    """The end-to-end import of a file, as the app role."""
    settings = Settings(_env_file=None, database_url=url, log_level="WARNING", log_format="json")
    engine = create_engine(url, role=settings.database_app_role or None)
    try:
        factory = session_factory(engine)
        out = await import_operator.import_file(
            factory, settings, "bench", path, fmt, ImportOptions(tags=["bench"]), None, lambda *_: None
        )
    finally:
        await engine.dispose()
    return out


def in_child(target: Callable[..., Any], *args: Any) -> Any:
    """`target(*args)` in a forked child process: its memory (rows, parsed files) never counts in
    another contender's peak RSS. Raises when the child fails."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, target, args))
    child.start()
    send.close()
    try:
        outcome, value = receive.recv()
    except EOFError:
        child.join()
        outcome, value = "error", f"the child process died (exit code {child.exitcode})"
    child.join()
    if outcome != "ok":
        raise RuntimeError(f"bench: {getattr(target, '__name__', target)} failed: {value}")
    return value


def _child(send: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        send.send(("ok", target(*args)))
    except BaseException as exc:
        send.send(("error", repr(exc)))


def timed_import(url: str, path: Path, fmt: str) -> dict[str, Any]:
    """The end-to-end import of a file (child process): its answer, seconds and peak RSS."""
    rss_before = peak_rss_mb()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    out = asyncio.run(import_path(url, path, fmt))
    seconds = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime
    return {**out, "seconds": seconds, "cpu": cpu_s, "rss": peak_rss_mb(), "rss_before": rss_before}


def timed_copy(
    dsn: str, table: str, org: uuid.UUID, kind: str, path: Path, streams: int
) -> tuple[float, int]:
    """Seconds to COPY the rows an import of this file stores, and how many (child process; the rows
    are built before the clock starts)."""
    if kind == "csv":
        with path.open() as lines:
            next(lines)
            values = [line.split(",", 1)[0] for line in lines]
        rows = reference_rows(values, org, tags=lambda i: ["bench", f"batch-{i % 10}"], sources=[])
    else:
        objects = [o for o in orjson.loads(path.read_bytes())["objects"] if o["type"] == "indicator"]
        rows = reference_rows(
            [o["name"] for o in objects],
            org,
            tags=lambda i: ["bench", *objects[i]["labels"]],
            sources=[],
            confidence=70,
            classification="malicious",  # what the import makes of indicator_types malicious-activity
            stix_ids=[o["id"] for o in objects],
            valid_from=datetime.fromisoformat(objects[0]["valid_from"]),
        )
    return asyncio.run(copy_rows(dsn, table, rows, streams)), len(rows)


async def reset(dsn: str, tables: list[str]) -> None:
    """Empty `indicators` (and what hangs off it) and the kept STIX objects (an import of a bundle seen
    before skips them), and make fresh reference tables: every round starts from the same empty tables."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE indicators, stix_objects CASCADE")
        for table in tables:
            await create_reference_table(conn, table)
    finally:
        await conn.close()


def rounds_of(
    dsn: str, url: str, org: uuid.UUID, kind: str, path: Path, rounds: Rounds, streams: list[int]
) -> dict[str, Any]:
    """Import and COPY references of one file, alternating, `rounds.rounds` times, into `rounds.rates`;
    the last import's answer with the peak RSS over all rounds. The rows are compared once both exist."""
    tables = {f"copy, {n} stream{'s' if n > 1 else ''}": (f"bench_copy_{n}", n) for n in streams}
    last: dict[str, Any] = {}
    busy: list[float] = []  # the import process's CPU time over its wall time, per round
    outcomes = set()
    peak = 0.0
    for round_no in range(rounds.rounds):
        asyncio.run(reset(dsn, [table for table, _n in tables.values()]))
        for name in rounds.order(round_no, ["import", *tables]):
            asyncio.run(settle(dsn, ["indicators", *(table for table, _n in tables.values())]))
            if name == "import":
                last = in_child(timed_import, url, path, kind)
                peak = max(peak, last["rss"])
                outcomes.add(tuple(last[k] for k in ("status", "processed", "created", "merged", "rejected")))
                rate = last["processed"] / last["seconds"]
                busy.append(last["cpu"] / last["seconds"])
            else:
                table, n = tables[name]
                seconds, count = in_child(timed_copy, dsn, table, org, kind, path, n)
                rate = count / seconds
            rounds.rates.setdefault(name, []).append(rate)
        if round_no == 0:
            for table, _n in tables.values():
                asyncio.run(check_same_rows(dsn, "indicators", f"org_id = '{org}'", table))
    if len(outcomes) != 1:
        raise RuntimeError(f"bench: the {kind} import did different work in different rounds: {outcomes}")
    return {**last, "rss": peak, "busy": statistics.median(busy)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 rows and 5,000 STIX indicators")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (at least 3)")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds: at least 3 (medians of alternating rounds)")
    n = 20_000 if args.quick else 1_000_000
    n_stix = 5_000 if args.quick else 100_000
    db = f"raptorflow_bench_imports_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def org_id(dsn: str) -> uuid.UUID:
        conn = await asyncpg.connect(dsn)
        try:
            return uuid.UUID(str(await conn.fetchval("SELECT id FROM organizations WHERE slug = 'bench'")))
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{db}"'))
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + db
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {
        **os.environ,
        "RAPTORFLOW_DATABASE_URL": url,
        "RAPTORFLOW_LOG_LEVEL": "WARNING",
        "RAPTORFLOW_LOG_FORMAT": "json",
    }
    csv_rounds, stix_rounds = Rounds(args.rounds), Rounds(args.rounds)
    try:
        cli(env, "migrate")
        cli(
            env,
            "user",
            "create",
            "--email",
            "bench@example.com",
            "--name",
            "Bench",
            "--password-stdin",
            stdin="benchmark passphrase 1234\n",
        )
        cli(env, "org", "create", "--name", "Bench", "--slug", "bench", "--owner", "bench@example.com")
        org = asyncio.run(org_id(dsn))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "indicators.csv"
            in_child(_write_values, path, n)
            size_mb = path.stat().st_size / 1e6
            out = rounds_of(dsn, url, org, "csv", path, csv_rounds, [1, 2])
            bundle = Path(folder) / "bundle.json"
            in_child(_write_bundle, bundle, n_stix)
            stix_mb = bundle.stat().st_size / 1e6
            stix_out = rounds_of(dsn, url, org, "stix", bundle, stix_rounds, [1])
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    rate, single, double = (csv_rounds.median(k) for k in ("import", "copy, 1 stream", "copy, 2 streams"))
    print(
        f"CSV import, {out['processed']:,} rows ({size_mb:.0f} MB), end to end on PostgreSQL, {args.rounds} rounds"
    )
    print(
        f"  status {out['status']}: created {out['created']:,}, merged {out['merged']:,}, rejected {out['rejected']:,}"
    )
    print(f"  import:   {csv_rounds.describe('import', 'indicators/s')}   (target >= {TARGET_RATE:,}/s)")
    print(
        "  COPY of the same rows (app's types and UUIDv7 ids) into a copy of `indicators`, alternating rounds:"
    )
    print(f"    1 stream (as the import writes):  {csv_rounds.describe('copy, 1 stream', 'rows/s')}")
    print(f"    2 streams (both cores):           {csv_rounds.describe('copy, 2 streams', 'rows/s')}")
    print(
        f"  import / COPY: {rate / single:.0%} of 1 stream, {rate / double:.0%} of 2 streams"
        f"   (target >= {TARGET_SHARE:.0%})"
    )
    print(
        f"  the import's own process (parse, normalize, send) was on a core {out['busy']:.0%} of its wall time"
    )
    print(f"  peak RSS of the import's process: {out['rss']:.0f} MB (at its start: {out['rss_before']:.0f} MB)"
          f"   (target < {TARGET_RSS_MB} MB)")  # fmt: skip
    stix_rate, stix_copy = stix_rounds.median("import"), stix_rounds.median("copy, 1 stream")
    print(
        f"\nSTIX bundle import, {stix_out['processed']:,} objects ({stix_mb:.0f} MB), end to end, {args.rounds} "
        f"rounds: status {stix_out['status']}, created {stix_out['created']:,}, rejected {stix_out['rejected']:,}"
    )
    print(f"  import:   {stix_rounds.describe('import', 'objects/s')}   (target >= {TARGET_STIX_RATE:,}/s)")
    print(f"  COPY of its indicator rows, 1 stream: {stix_rounds.describe('copy, 1 stream', 'rows/s')}")
    print(f"  import / COPY: {stix_rate / stix_copy:.0%}")
    print(f"  the import's own process was on a core {stix_out['busy']:.0%} of its wall time")
    print(
        f"  peak RSS of the import's process: {stix_out['rss']:.0f} MB (at its start: {stix_out['rss_before']:.0f} MB)"
        f"   (target < {TARGET_RSS_MB} MB)"
    )
    ok = (
        rate >= TARGET_RATE
        and rate / single >= TARGET_SHARE
        and out["rss"] < TARGET_RSS_MB
        and stix_rate >= TARGET_STIX_RATE
        and stix_out["rss"] < TARGET_RSS_MB
    )
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
