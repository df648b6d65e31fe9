"""The operator commands: `raptorflow plan list|set`, `billing trial`, `ledger check` (SQLite file)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raptorflow.cli import app as cli
from raptorflow.config import settings_from_env


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty SQLite file the commands migrate on first use."""
    path = tmp_path / "cli.db"
    monkeypatch.setenv("RAPTORFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("RAPTORFLOW_BILLING_ENABLED", "true")
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    settings_from_env.cache_clear()
    return path


def test_plans_trials_and_ledger_check(database: Path) -> None:
    """Plans are listed and edited as data; a trial starts once; a broken ledger exits 1."""
    runner = CliRunner()
    listed = runner.invoke(cli, ["plan", "list"])
    assert listed.exit_code == 0, listed.output
    assert "pro" in listed.output and "350000 paise" in listed.output and "members 25" in listed.output
    changed = runner.invoke(cli, ["plan", "set", "pro", "--members", "30", "--indicators", "unlimited"])
    assert changed.exit_code == 0, changed.output
    pro = next(
        line for line in runner.invoke(cli, ["plan", "list"]).output.splitlines() if line.startswith("pro")
    )
    assert "members 30" in pro and "indicators unlimited" in pro
    assert runner.invoke(cli, ["plan", "set", "pro", "--members", "many"]).exit_code == 2

    org = uuid.uuid4()
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO organizations (id, name, slug, settings, created_at, updated_at) "
            "VALUES (?, 'Cli', 'cli', '{}', '2026-12-01 00:00:00', '2026-12-01 00:00:00')",
            (org.hex,),
        )
    trial = runner.invoke(cli, ["billing", "trial", "--org", str(org), "--plan", "pro", "--days", "14"])
    assert trial.exit_code == 0 and "trialing pro" in trial.output, trial.output
    again = runner.invoke(cli, ["billing", "trial", "--org", str(org)])
    assert again.exit_code == 1 and "Free plan" in again.output

    ok = runner.invoke(cli, ["ledger", "check"])
    assert ok.exit_code == 0, ok.output
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO ledger_transactions (id, org_id, kind, reference, memo, created_at) "
            "VALUES (?, ?, 'payment', 'pay_forged', '', '2026-12-01 00:00:00')",
            (uuid.uuid4().hex, org.hex),
        )
    broken = runner.invoke(cli, ["ledger", "check"])
    assert broken.exit_code == 1
    assert "has no entries" in broken.output and "pay_forged has no credited payment" in broken.output
