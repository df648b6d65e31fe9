"""Settings: the embedded default, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from raptorflow.config import EMBEDDED_DATABASE_URL, Settings, SettingsError, load_settings


def test_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAPTORFLOW_DATABASE_URL", "RAPTORFLOW_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == EMBEDDED_DATABASE_URL == "sqlite+aiosqlite:///var/raptorflow.db"
    assert settings.redis_url is None
    assert settings.is_sqlite
    assert str(settings.sqlite_path()) == "var/raptorflow.db"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("RAPTORFLOW_DATABASE_URL", "mysql://root@localhost/x", "sqlite+aiosqlite"),
        ("RAPTORFLOW_DATABASE_URL", "postgresql://u@h/db", "postgresql+asyncpg"),
        ("RAPTORFLOW_REDIS_URL", "http://127.0.0.1:6379", "redis://"),
        ("RAPTORFLOW_LOG_FORMAT", "xml", "json"),
        ("RAPTORFLOW_REGISTRATION", "sometimes", "open"),
        ("RAPTORFLOW_LOG_LEVEL", "loud", "DEBUG"),
    ],
)
def test_bad_setting_gives_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert "\n" not in message
    assert variable in message
    assert expected in message


def test_env_file_is_read(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    env = Path(str(tmp_path)) / ".env"
    env.write_text("RAPTORFLOW_REDIS_URL=redis://127.0.0.1:6379/3\n")
    monkeypatch.delenv("RAPTORFLOW_REDIS_URL", raising=False)
    settings = Settings(_env_file=str(env))  # type: ignore[call-arg]
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
