"""SQL of exports: the filtered indicator list read in keyset batches (bounded memory)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Row

from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.kit.db import utcnow
from raptorflow.models import Indicator

BATCH = 5_000
COLUMNS = (
    Indicator.id,
    Indicator.type,
    Indicator.value,
    Indicator.classification,
    Indicator.confidence,
    Indicator.score,
    Indicator.tlp,
    Indicator.tags,
    Indicator.sources,
    Indicator.description,
    Indicator.first_seen,
    Indicator.last_seen,
    Indicator.valid_until,
    Indicator.project_id,
    Indicator.stix_id,
)


class ExportRepository(IndicatorRepository):
    """Indicators of one org for export."""

    async def batches(self, filters: dict[str, Any], batch: int = BATCH) -> AsyncIterator[Sequence[Row[Any]]]:
        """The matching indicators in id order, `batch` at a time (one keyset query per batch)."""
        base = self.filtered(filters, utcnow()).with_only_columns(*COLUMNS).order_by(Indicator.id)
        after: uuid.UUID | None = None
        while True:
            stmt = base if after is None else base.where(Indicator.id > after)
            rows: Any = (await self.session.execute(stmt.limit(batch))).all()
            if not rows:
                return
            yield rows
            if len(rows) < batch:
                return
            after = rows[-1].id
