"""The console's first-run setup token (one-time, stored hashed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin


class SetupToken(IdMixin, Base):
    """A one-time link printed by `raptorflow serve` while no user exists; used once to create the owner."""

    __tablename__ = "console_setup_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
