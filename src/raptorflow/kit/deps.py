"""Request-scoped dependencies shared by every domain: settings and the database session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.errors import RaptorFlowError


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    factory = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except RaptorFlowError as exc:
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise


# scope="function": commit before the response is sent, so a client never sees a 2xx for a rolled-back write.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
