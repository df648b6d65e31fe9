"""Settings read from the environment (prefix RAPTORFLOW_) and an optional .env file."""

from __future__ import annotations

import ipaddress
import sys
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DATABASE_URL = "sqlite+aiosqlite:///var/raptorflow.db"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class Registration(StrEnum):
    open = "open"
    invite = "invite"
    closed = "closed"


def _check_database_url(value: str) -> str:
    if value.startswith("sqlite+aiosqlite://"):
        return value
    if value.startswith("postgresql+asyncpg://"):
        if not urlsplit(value).hostname and "host=" not in value:
            raise ValueError(
                "a PostgreSQL URL needs a host, e.g. postgresql+asyncpg://user@127.0.0.1:5432/db"
            )
        return value
    raise ValueError("accepted values are sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB")


def _check_redis_url(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("accepted values are redis://HOST:PORT/DB, rediss://… or unix://PATH")
    return value


class Settings(BaseSettings):
    """Every knob of RaptorFlow; the README's configuration table lists them all."""

    model_config = SettingsConfigDict(
        env_prefix="RAPTORFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: Annotated[str, AfterValidator(_check_database_url)] = EMBEDDED_DATABASE_URL
    redis_url: Annotated[str | None, AfterValidator(_check_redis_url)] = None
    redis_timeout_ms: int = Field(default=100, ge=1, le=60_000)
    log_format: LogFormat | None = None
    log_level: str = "INFO"
    public_url: str = "http://127.0.0.1:8000"
    # Set by `raptorflow serve` for its workers (the address it binds); links use it when public_url is
    # unset.
    served_url: str | None = None
    secret_key: str | None = None
    registration: Registration = Registration.open
    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=3600, le=365 * 86_400)
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_hs256_secret: str | None = None
    argon2_time_cost: int | None = Field(default=None, ge=1, le=20)
    argon2_memory_kib: int | None = Field(default=None, ge=1024, le=4_194_304)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    database_app_role: str = Field(default="raptorflow_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$")
    # Billing (issue 6): off = self-hosted, no plan limits; on = SaaS plans, limits and Razorpay payments.
    billing_enabled: bool = False
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = None
    razorpay_webhook_secret: str | None = None
    razorpay_webhook_secret_previous: str | None = None
    razorpay_base_url: str = "https://api.razorpay.com"
    razorpay_timeout_s: float = Field(default=10.0, gt=0, le=120)
    billing_gst_rate_bps: int = Field(default=1800, ge=0, le=10_000)
    billing_grace_days: int = Field(default=7, ge=0, le=90)
    billing_seller_name: str = "RaptorFlow"
    billing_seller_address: str = ""
    billing_seller_state: str = Field(default="KA", pattern=r"^[A-Z]{2}$")
    billing_seller_gstin: str | None = None
    # Platform (issue 7): jobs, limits, HTTP hardening, outbound calls, metrics.
    broker_url: str | None = None
    job_concurrency: int = Field(default=2, ge=1, le=64)
    job_max_attempts: int = Field(default=5, ge=1, le=50)
    job_retry_base_s: float = Field(default=2.0, ge=0.0, le=3600.0)
    rate_limit_per_minute: int = Field(default=6000, ge=1)
    rate_limit_principal_per_minute: int = Field(default=3000, ge=1)
    rate_limit_anonymous_per_minute: int = Field(default=60, ge=1)
    # With Redis: hits of a key far from its limit are counted per process and added in Redis this
    # often (0 = every hit checked in Redis). See kit.ratelimit.RedisWindowLimiter.
    rate_limit_sync_ms: int = Field(default=100, ge=0, le=10_000)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=1000)
    cors_origins: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(default_factory=list)
    gzip_min_bytes: int = Field(default=1024, ge=0)
    # Level of response compression (gzip by ISA-L, levels 0-3: a higher level means 3). With zlib,
    # level 1 (nginx's default) compressed a 4.8 MB batch-lookup answer 8.7x in 31 ms and 9 (Starlette's
    # default) 10.9x in 113 ms — on the request's critical path; ISA-L level 1 takes ~2 ms.
    gzip_level: int = Field(default=1, ge=1, le=9)
    outbound_timeout_s: float = Field(default=10.0, gt=0, le=300)
    outbound_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    outbound_allow_private: bool = False
    # None: the system resolver. Operators point it at a filtering resolver; tests at their own server.
    outbound_dns_server: str | None = None
    webhook_retry_hours: float = Field(default=24.0, gt=0, le=168)
    metrics_enabled: bool = False
    metrics_token: str | None = None

    @field_validator("outbound_dns_server")
    @classmethod
    def _dns_server(cls, value: str | None) -> str | None:
        if value:
            dns_server_address(value)
        return value or None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("accepted values are DEBUG, INFO, WARNING, ERROR")
        return upper

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite (the embedded default or an explicit file)."""
        return self.database_url.startswith("sqlite")

    @property
    def effective_log_format(self) -> LogFormat:
        """JSON unless asked otherwise or stderr is a terminal."""
        if self.log_format is not None:
            return self.log_format
        return LogFormat.console if sys.stderr.isatty() else LogFormat.json

    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL or an in-memory database."""
        if not self.is_sqlite:
            return None
        raw = self.database_url.split("///", 1)[1] if "///" in self.database_url else ""
        raw = raw.split("?", 1)[0]
        if raw in ("", ":memory:"):
            return None
        return Path(raw)

    @property
    def link_base(self) -> str:
        """Base of every absolute link users follow (setup, invitations, TAXII): RAPTORFLOW_PUBLIC_URL when
        set, else the address `serve` binds. Token issuers keep public_url, so every process agrees on it."""
        if self.served_url and "public_url" not in self.model_fields_set:
            return self.served_url.rstrip("/")
        return self.public_url.rstrip("/")


def dns_server_address(value: str) -> tuple[str, int]:
    """(IP, port) of `IP`, `IP:port` or `[IPv6]:port` (port 53 when absent); ValueError otherwise."""
    host, port = value.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError("expected an IP address, IP:port or [IPv6]:port")
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, digits = host.partition(":")
        if not digits.isdigit():
            raise ValueError("expected an IP address, IP:port or [IPv6]:port")
        port = int(digits)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("expected an IP address, IP:port or [IPv6]:port") from None
    if not 0 < port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    return host, port


class SettingsError(Exception):
    """A setting has a value RaptorFlow cannot use; the message is one line for the operator."""


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into one line naming the variable(s) and what is accepted."""
    parts: list[str] = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg: str = err["msg"].removeprefix("Value error, ")
        if err["type"] == "enum":
            expected: Any = err.get("ctx", {}).get("expected", "")
            msg = f"accepted values are {expected}"
        parts.append(f"RAPTORFLOW_{field.upper()}: {msg}")
    return "invalid setting: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, raising SettingsError with a one-line message when one is unusable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def served_url(host: str, port: int) -> str:
    """The base URL of `serve --host HOST --port PORT` as a browser on this machine reaches it."""
    # A wildcard bind is reachable on loopback; operators who serve others set RAPTORFLOW_PUBLIC_URL.
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    if ":" in reach:
        reach = f"[{reach}]"
    return f"http://{reach}:{port}"


@lru_cache(maxsize=1)
def settings_from_env() -> Settings:
    """Settings of this process (used by the uvicorn factory and the CLI)."""
    return load_settings()
