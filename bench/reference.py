"""The references of the benchmarks: what PostgreSQL alone does for the work a benchmarked path does.

A reference must be neither handicapped nor advantaged against the path it is printed beside:
- its rows are the rows the app stores — type and value from the app's `normalize` (so hashes stay out
  of the trigram index, as the app keeps them), ids from the app's `new_ids` in the app's 1,000-row
  calls (time-ordered UUIDv7s appended at the end of the primary key, not random ones), the same
  tags, sources and defaults — and `check_same_rows` fails the run when the stored rows differ;
- its table is a copy of `indicators` with every index, constraint, default and foreign key (no
  row-level security: COPY FROM refuses tables under it; the app's policy check is its own cost);
- it is measured single-stream and with the concurrency of the path, in rounds alternating with the
  path, each on a settled database (`settle`), and figures are medians over the rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from raptorflow.intel.indicators.normalize import normalize
from raptorflow.intel.indicators.service import DEFAULTS
from raptorflow.kit.db import new_ids

# The app's unit of work on the bulk path (one request, one `new_ids` call, one statement).
CHUNK = 1_000
COPY_COLUMNS = (
    "id", "org_id", "type", "value", "classification", "confidence", "score", "tlp", "tags", "sources",
    "description", "attack_techniques", "first_seen", "last_seen", "false_positive", "sightings_count",
    "created_by", "stix_id", "valid_from", "created_at", "updated_at",
)  # fmt: skip
# Columns whose content is compared between the app's rows and the reference's (ids and times differ).
_COMPARED_TEXT = ("type", "value", "classification", "tlp", "tags", "sources", "description",
                  "attack_techniques", "stix_id")  # fmt: skip
_COMPARED_NUMBERS = ("confidence", "score", "sightings_count")
_COMPARED_PRESENT = ("project_id", "workspace_id", "created_by", "valid_from", "valid_until", "archived_at", "expired_at",
                     "false_positive_reason")  # fmt: skip


def reference_rows(
    values: Sequence[str],
    org_id: uuid.UUID,
    *,
    tags: Callable[[int], list[str]],
    sources: list[str],
    score: int | None = None,
    confidence: int | None = None,
    classification: str | None = None,
    created_by: uuid.UUID | None = None,
    stix_ids: Sequence[str] | None = None,
    valid_from: datetime | None = None,
) -> list[tuple[Any, ...]]:
    """The rows the app stores for these raw values (COPY_COLUMNS order), as described above."""
    now = datetime.now(UTC)
    sources_json = orjson.dumps(sources).decode()
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), CHUNK):
        part = values[start : start + CHUNK]
        for offset, (raw, ident) in enumerate(zip(part, new_ids(len(part)), strict=True)):
            i = start + offset
            n = normalize(raw)
            rows.append(
                (ident, org_id, n.type.value, n.value, classification or DEFAULTS["classification"],
                 DEFAULTS["confidence"] if confidence is None else confidence,
                 DEFAULTS["score"] if score is None else score, DEFAULTS["tlp"],
                 orjson.dumps(tags(i)).decode(), sources_json, "", "[]", now, now, False, 0, created_by,
                 stix_ids[i] if stix_ids is not None else None, valid_from, now, now)
            )  # fmt: skip
    return rows


async def create_reference_table(conn: asyncpg.Connection, name: str) -> None:
    """A fresh copy of `indicators`: every index, constraint and default, and its foreign keys."""
    await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    await conn.execute(f'CREATE TABLE "{name}" (LIKE indicators INCLUDING ALL)')
    foreign = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'indicators'::regclass AND contype = 'f'"
    )
    for conname, definition in foreign:
        await conn.execute(f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_{conname}" {definition}')


async def copy_rows(dsn: str, table: str, rows: Sequence[tuple[Any, ...]], streams: int) -> float:
    """Seconds to COPY the rows: one COPY on one connection (streams=1), or `streams` connections each
    COPYing the next CHUNK rows in turn, as the path's requests take the next chunk."""
    conns = [await asyncpg.connect(dsn) for _ in range(streams)]
    try:
        if streams == 1:
            started = time.perf_counter()
            await conns[0].copy_records_to_table(table, records=rows, columns=COPY_COLUMNS)
            return time.perf_counter() - started
        chunks = [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]
        chunks.reverse()

        async def stream(conn: asyncpg.Connection) -> None:
            while chunks:
                await conn.copy_records_to_table(table, records=chunks.pop(), columns=COPY_COLUMNS)

        started = time.perf_counter()
        await asyncio.gather(*(stream(c) for c in conns))
        return time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()


async def settle(dsn: str, tables: Sequence[str]) -> None:
    """A settled database before a timed round: what autovacuum would do (statistics, visibility map,
    GIN pending lists) done now, dirty pages written out, and no autovacuum worker left running here."""
    conn = await asyncpg.connect(dsn)
    try:
        for table in tables:
            await conn.execute(f'VACUUM (ANALYZE) "{table}"')
        await conn.execute("CHECKPOINT")
        for _ in range(600):  # at most five minutes
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
            )
            if not busy:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def check_same_rows(
    dsn: str, app_table: str, app_where: str, reference_table: str, reference_where: str = "true"
) -> None:
    """Raise when the reference's rows are not the app's: per type, the same count, the same bytes of
    every stored text, the same sums of numbers and the same presence of every optional column."""

    def summary(table: str, where: str) -> str:
        parts = [
            "count(*)",
            *(f"sum(octet_length({c}::text))" for c in _COMPARED_TEXT),
            *(f"sum({c})" for c in _COMPARED_NUMBERS),
            *(f"count({c})" for c in _COMPARED_PRESENT),
        ]
        return f'SELECT type, {", ".join(parts)} FROM "{table}" WHERE {where} GROUP BY type ORDER BY type'

    conn = await asyncpg.connect(dsn)
    try:
        app = [tuple(r) for r in await conn.fetch(summary(app_table, app_where))]
        ref = [tuple(r) for r in await conn.fetch(summary(reference_table, reference_where))]
    finally:
        await conn.close()
    if app != ref:
        names = [
            "type",
            "rows",
            *_COMPARED_TEXT,
            *_COMPARED_NUMBERS,
            *(f"has {c}" for c in _COMPARED_PRESENT),
        ]
        raise RuntimeError(
            "the reference's rows are not the app's (per type: "
            + "; ".join(
                f"{name}: app {a} / reference {b}"
                for app_row, ref_row in zip(app, ref, strict=False)
                for name, a, b in zip(names, app_row, ref_row, strict=True)
                if a != b
            )
            + f"; types app {[r[0] for r in app]} / reference {[r[0] for r in ref]})"
        )


class Rounds:
    """Contenders timed in alternating rounds; each figure is a rate (items/s) per round."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.rates: dict[str, list[float]] = {}

    def order(self, round_no: int, names: Sequence[str]) -> list[str]:
        """Who goes first alternates, so drift over the run (a neighbour's load, a growing table)
        falls on each contender alike."""
        return list(names) if round_no % 2 == 0 else list(reversed(names))

    async def run(
        self, names: Sequence[str], timed: Callable[[int, str], Awaitable[float]], items: Callable[[int], int]
    ) -> None:
        """Run every round: `timed(round, name)` returns seconds for `items(round)` items."""
        for round_no in range(self.rounds):
            for name in self.order(round_no, names):
                seconds = await timed(round_no, name)
                self.rates.setdefault(name, []).append(items(round_no) / seconds)

    def median(self, name: str) -> float:
        """The median rate of a contender."""
        return statistics.median(self.rates[name])

    def describe(self, name: str, unit: str) -> str:
        """`median unit (round figures)`."""
        each = ", ".join(f"{r:,.0f}" for r in self.rates[name])
        return f"{self.median(name):,.0f} {unit} (median of {each})"
