"""Request-scoped dependencies shared by every domain: settings and the database session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.errors import RaptorFlowError

AFTER_COMMIT = "after_commit"


def after_commit(session: AsyncSession, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` once this request's transaction has committed (e.g. to drop a cache entry)."""
    session.info.setdefault(AFTER_COMMIT, []).append(hook)


async def _run_after_commit(session: AsyncSession) -> None:
    for hook in session.info.pop(AFTER_COMMIT, []):
        await hook()


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    factory = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
            if session.in_transaction():  # a request that never touched the database has nothing to commit
                await session.commit()
            await _run_after_commit(session)
        except RaptorFlowError as exc:
            if exc.keep_changes:
                await session.commit()
                await _run_after_commit(session)
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise


# scope="function": commit before the response is sent, so a client never sees a 2xx for a rolled-back write.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
