"""The console's own SQL: a bounded size probe (never an exact count of a big table)."""

from __future__ import annotations

from sqlalchemy import func, select

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Indicator


class ConsoleRepository(TenantRepository):
    """Read-only probes for one org."""

    model = Indicator

    async def indicators_at_least(self, n: int) -> bool:
        """True when the org holds at least `n` indicators (reads at most `n` index entries)."""
        bounded = self.scoped(select(Indicator.id)).limit(n).subquery()
        found = await self.session.scalar(select(func.count()).select_from(bounded))
        return int(found or 0) >= n
