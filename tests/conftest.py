"""Shared fixtures: the app on SQLite and on a throwaway PostgreSQL database, one client per test."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.app import create_app
from raptorflow.config import Settings
from raptorflow.kit import migrations
from raptorflow.models import Base

IN_CI = bool(os.environ.get("CI"))
ADMIN_PG_URL = os.environ.get(
    "RAPTORFLOW_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# A copy of ../shared/data/attack/enterprise-attack-sample.json: the tests must not depend on the checkout's place.
ATTACK_SAMPLE = Path(__file__).resolve().parent / "fixtures" / "attack" / "enterprise-attack-sample.json"
TEST_REDIS_URL = os.environ.get("RAPTORFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_service(url: str, default_port: int, name: str) -> None:
    """Skip (or, under CI, fail) when a server the test needs does not answer."""
    if not _reachable(url, default_port):
        message = f"{name} at {urlsplit(url).hostname}:{urlsplit(url).port or default_port} is unreachable"
        if IN_CI:
            pytest.fail(message + " (CI is set: services must be up)")
        pytest.skip(message)


def pg_url_for(database: str) -> str:
    """The admin URL with another database name."""
    parts = urlsplit(ADMIN_PG_URL)
    return parts._replace(path="/" + database).geturl()


async def create_pg_database() -> str:
    """Create an empty database on the test server; return its name."""
    name = f"raptorflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(ADMIN_PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return name


async def drop_pg_database(name: str) -> None:
    """Drop a test database, disconnecting whoever is left."""
    admin = create_async_engine(ADMIN_PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database of each kind, created for this run and dropped after it."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "raptorflow.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(migrations.upgrade, url)
        yield url
        return
    require_service(ADMIN_PG_URL, 5432, "PostgreSQL")
    name = await create_pg_database()
    url = pg_url_for(name)
    try:
        # `make test` runs two pytest processes at once: the migrations create cluster-wide objects
        # (the app role), so one process migrates at a time.
        admin = create_async_engine(ADMIN_PG_URL, isolation_level="AUTOCOMMIT")
        async with admin.connect() as lock:
            await lock.execute(text("SELECT pg_advisory_lock(7270001)"))
            try:
                await asyncio.to_thread(migrations.upgrade, url)
            finally:
                await lock.execute(text("SELECT pg_advisory_unlock(7270001)"))
        await admin.dispose()
        yield url
    finally:
        await drop_pg_database(name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: JSON logs, no .env, the given database."""
    # argon2id at its minimum cost: hashing strength is not under test here, and sign-ups dominate runtime.
    values: dict[str, Any] = {
        "database_url": database_url,
        "log_format": "json",
        "redis_url": None,
        # Every in-process client is 127.0.0.1 and one test (the fuzzer above all) sends thousands of
        # requests as one org: the limits stay on but out of reach. tests/platform sets its own.
        "rate_limit_anonymous_per_minute": 1_000_000,
        "rate_limit_per_minute": 1_000_000,
        "rate_limit_principal_per_minute": 1_000_000,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
async def app(database_url: str) -> AsyncIterator[Any]:
    """The application on the session's database."""
    application = create_app(make_settings(database_url))
    yield application
    await application.state.engine.dispose()


async def truncate_all(application: Any) -> None:
    """Empty every table: tests never share rows."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    if not tables:
        return
    # The app's engine runs as the restricted role (no TRUNCATE on the audit log): use the owner's.
    engine = create_async_engine(application.state.settings.database_url)
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f'DELETE FROM "{table}"'))
    await engine.dispose()


PASSWORD = "correct horse battery staple"


class Actor:
    """A signed-in user as tests drive them: their id, tokens and headers."""

    def __init__(self, http: httpx.AsyncClient, email: str, user_id: str, tokens: dict[str, Any]) -> None:
        self.http = http
        self.email = email
        self.user_id = user_id
        self.tokens = tokens

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the access token."""
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def in_org(self, org_id: str) -> dict[str, str]:
        """Headers acting in an organization."""
        return {**self.headers, "X-Organization-ID": str(org_id)}


async def sign_up(
    http: httpx.AsyncClient, email: str, name: str = "Test User", password: str = PASSWORD
) -> Actor:
    """Register and sign in a user."""
    created = await http.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert created.status_code == 201, created.text
    return await sign_in(http, email, password, created.json()["id"])


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD, user_id: str = "") -> Actor:
    """Sign in an existing user."""
    response = await http.post("/api/v1/auth/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return Actor(http, email, user_id, response.json())


async def create_org(actor: Actor, slug: str, name: str | None = None) -> str:
    """Create an organization owned by `actor`; returns its id."""
    response = await actor.http.post(
        "/api/v1/organizations", json={"name": name or slug.title(), "slug": slug}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add_member(owner: Actor, org_id: str, member: Actor, role: str) -> None:
    """Add an existing user to an org with a role."""
    response = await owner.http.post(
        f"/api/v1/organizations/{org_id}/members",
        json={"email": member.email, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "added"


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the app in-process; tables are emptied after each test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await truncate_all(app)
    # Per-process state that outlives a request: forget keys and sign-in failures between tests.
    await app.state.limiter.storage.reset()
    await app.state.token_issuer.reload(force=True)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis (database 15)."""
    require_service(TEST_REDIS_URL, 6379, "Redis")
    yield TEST_REDIS_URL
