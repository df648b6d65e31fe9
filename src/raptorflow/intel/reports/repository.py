"""SQL of reports, and the lookups that check and name their object references."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, select

from raptorflow.intel.context_base import ContextRepository, SortKey
from raptorflow.models import Campaign, Indicator, Report, ThreatActor, Vulnerability

# For each referable type: its table and the column that names it.
REFERABLE: dict[str, tuple[Any, Any]] = {
    "indicator": (Indicator, Indicator.value),
    "threat-actor": (ThreatActor, ThreatActor.name),
    "campaign": (Campaign, Campaign.name),
    "vulnerability": (Vulnerability, Vulnerability.cve_id),
    "report": (Report, Report.title),
}


class ReportRepository(ContextRepository[Report]):
    """Reports of one organization."""

    model = Report
    sort_keys: ClassVar[dict[str, SortKey]] = {
        "title": SortKey(Report.title, "str"),
        "created_at": SortKey(Report.created_at, "datetime"),
        "updated_at": SortKey(Report.updated_at, "datetime"),
        "published": SortKey(Report.published, "datetime", nullable=True),
    }
    text_columns = ("title", "description")

    def kind_conditions(self, extra: dict[str, Any]) -> list[ColumnElement[bool]]:
        """Publication window: published_after inclusive, published_before exclusive."""
        out: list[ColumnElement[bool]] = []
        if extra.get("published_after") is not None:
            out.append(Report.published >= extra["published_after"])
        if extra.get("published_before") is not None:
            out.append(Report.published < extra["published_before"])
        return out

    async def names(self, refs: Iterable[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], str]:
        """The name of each referenced object that exists in this org (one query per type)."""
        wanted: dict[str, set[uuid.UUID]] = {}
        for kind, object_id in refs:
            # Imported reports may reference kinds RaptorFlow does not hold: those stay unnamed.
            if kind in REFERABLE:
                wanted.setdefault(kind, set()).add(object_id)
        found: dict[tuple[str, uuid.UUID], str] = {}
        for kind, ids in wanted.items():
            model, label = REFERABLE[kind]
            rows = await self.session.execute(
                select(model.id, label).where(model.org_id == self.org_id, model.id.in_(ids))
            )
            for object_id, name in rows.all():
                found[(kind, object_id)] = name
        return found
