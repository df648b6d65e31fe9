"""Import benchmark: a CSV of 1,000,000 indicators imported end to end on PostgreSQL, beside a raw COPY.

Also a STIX 2.1 bundle of 100,000 indicators (10,000 with --quick) imported the same way (target ≥ 15,000
objects/s).

End to end = what `raptorflow import` does: the file is stored in the database in 1 MB chunks, then the
import job reads it back, parses and normalizes every row, COPYs the rows into a staging table and merges
them into `indicators` in one INSERT … SELECT … ON CONFLICT (as the app role, under row-level security).
The reference is a raw COPY of the same values into a copy of `indicators` with all its indexes,
measured in the same run. Peak RSS is the benchmark process's own (it runs the import in-process).

    .venv/bin/python bench/imports.py           # 1,000,000 rows
    .venv/bin/python bench/imports.py --quick   # 100,000 rows
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


async def raw_copy_reference(dsn: str, values: list[str]) -> float:
    """Rows/s of COPY of the same values into a copy of `indicators` with all its indexes and constraints."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.execute("CREATE TABLE bench_copy (LIKE indicators INCLUDING ALL)")
        org, now = uuid.uuid4(), datetime.now(UTC)
        columns = [
            "id", "org_id", "type", "value", "classification", "confidence", "score", "tlp", "tags", "sources",
            "description", "attack_techniques", "first_seen", "last_seen", "false_positive", "sightings_count",
            "created_at", "updated_at",
        ]  # fmt: skip
        rows = [
            (uuid.uuid4(), org, "x", v, "unknown", 50, 50, "amber", '["bench"]', "[]", "", "[]", now, now, False, 0,
             now, now)
            for v in values
        ]  # fmt: skip
        started = time.perf_counter()
        await conn.copy_records_to_table("bench_copy", records=rows, columns=columns)
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_copy")
        return len(rows) / elapsed
    finally:
        await conn.close()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def import_path(url: str, path: Path, fmt: str) -> dict[str, Any]:
    """The end-to-end import of a file, as the app role."""
    settings = Settings(_env_file=None, database_url=url, log_level="WARNING", log_format="json")  # type: ignore[call-arg]
    engine = create_engine(url, role=settings.database_app_role or None)
    try:
        factory = session_factory(engine)
        out = await import_operator.import_file(
            factory, settings, "bench", path, fmt, ImportOptions(tags=["bench"]), None, lambda *_: None
        )
    finally:
        await engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    n_stix = 10_000 if args.quick else 100_000
    db = f"raptorflow_bench_imports_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
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
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "indicators.csv"
            # Written by a child process, so the values never count in this process's peak RSS.
            writer = multiprocessing.get_context("fork").Process(target=_write_values, args=(path, n))
            writer.start()
            writer.join()
            size_mb = path.stat().st_size / 1e6
            rss_before = peak_rss_mb()
            started = time.perf_counter()
            out = asyncio.run(import_path(url, path, "csv"))
            elapsed = time.perf_counter() - started
            rss = peak_rss_mb()
            bundle = Path(folder) / "bundle.json"
            writer = multiprocessing.get_context("fork").Process(target=_write_bundle, args=(bundle, n_stix))
            writer.start()
            writer.join()
            stix_mb = bundle.stat().st_size / 1e6
            stix_rss_before = peak_rss_mb()
            started = time.perf_counter()
            stix_out = asyncio.run(import_path(url, bundle, "stix"))
            stix_elapsed = time.perf_counter() - started
            stix_rss = peak_rss_mb()
        values = indicator_values(n, seed=7)
        copy_rate = asyncio.run(raw_copy_reference(dsn, values))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))

    rows = out["processed"]
    rate = rows / elapsed
    print(f"CSV import, {rows:,} rows ({size_mb:.0f} MB), end to end on PostgreSQL: {elapsed:.1f} s")
    print(
        f"  status {out['status']}: created {out['created']:,}, merged {out['merged']:,}, rejected {out['rejected']:,}"
    )
    print(f"  import:   {rate:,.0f} indicators/s   (target >= {TARGET_RATE:,}/s)")
    print(f"  raw COPY of the same rows into the same indexed table: {copy_rate:,.0f} rows/s")
    print(f"  import / COPY: {rate / copy_rate:.0%}   (target >= {TARGET_SHARE:.0%})")
    print(
        f"  peak RSS: {rss:.0f} MB (before the import: {rss_before:.0f} MB)   (target < {TARGET_RSS_MB} MB)"
    )
    stix_rate = stix_out["processed"] / stix_elapsed
    print(
        f"\nSTIX bundle import, {stix_out['processed']:,} objects ({stix_mb:.0f} MB), end to end: "
        f"{stix_elapsed:.1f} s, status {stix_out['status']}, created {stix_out['created']:,}, "
        f"rejected {stix_out['rejected']:,}"
    )
    print(f"  import:   {stix_rate:,.0f} objects/s   (target >= {TARGET_STIX_RATE:,}/s)")
    print(f"  import / raw COPY of indicator rows (above): {stix_rate / copy_rate:.0%}")
    print(
        f"  peak RSS after it: {stix_rss:.0f} MB (before it: {stix_rss_before:.0f} MB)"
        f"   (target < {TARGET_RSS_MB} MB)"
    )
    ok = (
        rate >= TARGET_RATE
        and rate / copy_rate >= TARGET_SHARE
        and rss < TARGET_RSS_MB
        and stix_rate >= TARGET_STIX_RATE
        and stix_rss < TARGET_RSS_MB
    )
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
