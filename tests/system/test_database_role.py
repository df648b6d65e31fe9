"""The application's PostgreSQL connections act as the restricted app role, always."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text


async def test_connections_keep_the_app_role_after_a_rollback(app: Any) -> None:
    """A connection's first use ending in a rollback must not undo its role switch (RLS would be off)."""
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("roles and row-level security are PostgreSQL features")
    await app.state.engine.dispose()  # the next checkout opens a new connection
    for _ in range(3):
        async with app.state.engine.connect() as conn:  # returned to the pool with a rollback
            assert (await conn.execute(text("SELECT current_user"))).scalar() == "raptorflow_app"
