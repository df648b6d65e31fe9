"""Periodic system tasks in the API process when no Celery beat runs (the embedded default)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.config import Settings
from raptorflow.jobs.execution import execute_system
from raptorflow.kit.jobs import Dispatcher, periodic_tasks
from raptorflow.kit.logging import get_logger

log = get_logger("raptorflow.jobs")


class InProcessScheduler:
    """Runs every periodic task on its period, one at a time, until stopped."""

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        dispatcher: Dispatcher,
        **extras: Any,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.dispatcher = dispatcher
        self.extras = extras
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = {spec.name: loop.time() + 1.0 for spec in periodic_tasks()}
        while True:
            now = loop.time()
            for spec in periodic_tasks():
                if due.get(spec.name, now) > now:
                    continue
                due[spec.name] = now + float(spec.periodic_s or 60)
                try:
                    await execute_system(
                        self.factory, self.settings, spec.name, dispatcher=self.dispatcher, **self.extras
                    )
                except Exception as exc:  # one failing task must not stop the others
                    log.warning("periodic.failed", task=spec.name, error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Cancel the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
