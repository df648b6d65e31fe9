"""Database building blocks: declarative base, portable column types, engine and sessions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import asyncpg.exceptions
from sqlalchemy import JSON, DateTime, MetaData, event, make_url, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, Uuid

from raptorflow.kit.logging import get_logger

log = get_logger("raptorflow.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def new_id() -> uuid.UUID:
    """A time-ordered UUID (version 7, RFC 9562), so new rows land at the end of the primary-key index."""
    # Built from the RFC layout directly: the uuid6 package's constructor costs ~50 µs per id, which
    # showed up as a third of bulk-insert time; this costs ~2 µs. Python 3.14's uuid.uuid7 replaces it.
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62 & _RAND_A) << 64 | 0b10 << 62 | rand & _RAND_B
    )
    return uuid.UUID(int=value)


def new_ids(n: int) -> list[uuid.UUID]:
    """`n` time-ordered UUIDs as `new_id` makes them, with one read of the random source for all."""
    ms = (time.time_ns() // 1_000_000) & 0xFFFF_FFFF_FFFF
    head = ms << 80 | 0x7 << 76
    block = os.urandom(10 * n)
    make = uuid.UUID
    ids = []
    for start in range(0, 10 * n, 10):
        rand = int.from_bytes(block[start : start + 10], "big")
        ids.append(make(int=head | (rand >> 62 & _RAND_A) << 64 | 0b10 << 62 | rand & _RAND_B))
    return ids


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; RaptorFlow stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Base of every ORM class; constraint names follow NAMING_CONVENTION on both databases."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), uuid.UUID: Uuid(), dict[str, Any]: JSONType}


class IdMixin:
    """A UUIDv7 primary key."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    """created_at / updated_at kept by the ORM."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def ensure_sqlite_directory(url: str) -> None:
    """Create the folder of a SQLite file URL (SQLite creates the file, not its folder)."""
    if not url.startswith("sqlite"):
        return
    path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 10, role: str | None = None) -> AsyncEngine:
    """An async engine for SQLite (WAL, foreign keys on) or PostgreSQL (asyncpg).

    With `role` (PostgreSQL), every connection switches to that role, so row-level security applies
    even when the login role owns the tables.
    """
    if url.startswith("sqlite"):
        ensure_sqlite_directory(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, pool_recycle=1800
    )
    if role:
        if not role.replace("_", "").isalnum():
            raise ValueError("database role must be letters, digits and underscores")

        def _set_role(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET ROLE {role}")
            cursor.close()
            # The driver ran that inside an implicit transaction: commit it, or the first rollback on
            # this connection (a read-only use returned to the pool) would undo the role switch and
            # leave a connection that bypasses row-level security.
            dbapi_connection.commit()

        event.listen(engine.sync_engine, "connect", _set_role)
    return engine


def session_factory(
    engine: AsyncEngine, *, direct_pool: DirectPool | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (and carry the direct pool, if any)."""
    info = {DIRECT_POOL: direct_pool} if direct_pool is not None else None
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True, info=info)


def direct_pool_of(session: AsyncSession) -> DirectPool | None:
    """The session's direct asyncpg pool (PostgreSQL applications only)."""
    pool = session.info.get(DIRECT_POOL)
    return pool if isinstance(pool, DirectPool) else None


def dialect_name(session: AsyncSession) -> str:
    """'postgresql' or 'sqlite': the database a session talks to."""
    return session.get_bind().dialect.name


async def ping(engine: AsyncEngine) -> None:
    """Run SELECT 1; raises when the database cannot be reached."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the body succeeds, rolled back when it raises."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# How long cleanup shielded from cancellation may take (closing a session, stopping a COPY): a
# database that stopped answering must not keep a request, or a worker's shutdown, waiting for ever.
CLOSE_TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def stream_session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for a read streamed to a client, closed (rolled back) however the stream ends."""
    session = factory()
    try:
        yield session
    finally:
        # A client that leaves mid-stream cancels the task reading for it, possibly inside a query.
        # The close must still run to its end: cancelled, it would hand the pool a connection in the
        # middle of a transaction (and SQLAlchemy would log its failed reset as a plain traceback).
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await session.close()


DIRECT_POOL = "raptorflow.direct_pool"

# The server ended the connection under a statement (a restart, pg_terminate_backend, a crash) or
# refused a new one while starting or stopping; OSError covers refused and reset sockets.
LOST_CONNECTION: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


# A connection the server ended while it sat idle in the pool can be handed out before its end is
# read: asyncpg then fails the next statement with an InternalClientError (its protocol state is the
# server's last error). A statement failing so on a fresh connection is a bug, not an outage.
BROKEN_CONNECTION = (*LOST_CONNECTION, asyncpg.exceptions.InternalClientError)


class DatabaseUnavailable(ConnectionError):
    """The database cannot be reached right now (answered as 503 with Retry-After, like any
    ConnectionError)."""


class DirectPool:
    """A small asyncpg pool for hot read paths: one statement in autocommit, no ORM, no reset query.

    Only reads go through it: that is what makes sending a statement again after a lost connection safe.

    SQLAlchemy's pool checkout and a session's commit cost ~250 µs per request; a lookup is a single
    statement that binds its org itself (see the `raptorflow_lookup` function), so it needs neither.
    Connections switch to the app role once, when opened, so row-level security applies as usual.
    """

    def __init__(self, url: str, *, role: str | None, max_size: int) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.role = role
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                role = self.role

                async def init(conn: asyncpg.Connection) -> None:
                    if role:
                        await conn.execute(f"SET ROLE {role}")

                async def reset(_conn: asyncpg.Connection) -> None:
                    # Statements on this pool are single autocommit statements with transaction-local
                    # settings: nothing outlives them, so the default reset round trip is skipped.
                    return None

                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.max_size, init=init, reset=reset
                )
            return self._pool

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of one read-only statement in autocommit; a statement whose connection broke is sent
        once more on a fresh connection, then DatabaseUnavailable."""
        try:
            return await self._fetch(sql, args)
        except TimeoutError as exc:  # a second try would only double the wait
            raise DatabaseUnavailable(f"database unavailable ({type(exc).__name__})") from exc
        except BROKEN_CONNECTION as exc:
            first = exc
        # The connections opened before the break are likely dead too (a restart ends them all):
        # none of them is used again, so the retry runs on a fresh one.
        if self._pool is not None:
            await self._pool.expire_connections()
        log.warning("db.connection_lost", error=type(first).__name__, detail=str(first)[:200], retry=True)
        try:
            return await self._fetch(sql, args)
        except LOST_CONNECTION as exc:
            raise DatabaseUnavailable(f"database unavailable ({type(exc).__name__})") from exc

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        pool = self._pool or await self._open()
        async with pool.acquire() as conn:
            try:
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            except BROKEN_CONNECTION:
                # Closed now, not gracefully on release: it cannot talk any more. (When asyncpg has
                # seen its end already, it has taken it back itself.)
                with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                    conn.terminate()
                raise
            return rows

    async def close(self) -> None:
        """Close every connection (application shutdown)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
