"""Backups: SQLite's online backup API, pg_dump/pg_restore (custom format) for PostgreSQL."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class BackupError(Exception):
    """A backup or restore could not be done; the message says why in one line."""


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as libpq (pg_dump, psql) takes it."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _sqlite_file(database_url: str) -> Path:
    raw = database_url.split("///", 1)[1].split("?", 1)[0] if "///" in database_url else ""
    if raw in ("", ":memory:"):
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(raw)


def _run(args: list[str]) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise BackupError(f"{args[0]} is not installed (it comes with the PostgreSQL client package)")
    # Arguments are a list (no shell); the URL comes from the operator's own settings.
    done = subprocess.run([tool, *args[1:]], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BackupError(f"{args[0]} failed: {last}")


def backup(database_url: str, target: Path) -> Path:
    """Write a consistent copy of the database to `target` while it keeps serving."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if database_url.startswith("sqlite"):
        source_path = _sqlite_file(database_url)
        if not source_path.exists():
            raise BackupError(f"{source_path} does not exist")
        # The online backup API copies page by page under SQLite's locks: safe while the API writes.
        with sqlite3.connect(source_path) as source, sqlite3.connect(target) as dest:
            source.backup(dest)
        dest.close()
        source.close()
        return target
    _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(target), libpq_url(database_url)])
    return target


def restore(database_url: str, source: Path) -> None:
    """Load a backup into the configured database (meant for a fresh, empty one)."""
    if not source.exists():
        raise BackupError(f"{source} does not exist")
    if database_url.startswith("sqlite"):
        target_path = _sqlite_file(database_url)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(source) as src, sqlite3.connect(target_path) as dest:
            src.backup(dest)
        dest.close()
        src.close()
        return
    _run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", libpq_url(database_url), str(source)])
