"""SQL of threat actors."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ColumnElement, select

from raptorflow.intel.context_base import ContextRepository, SortKey
from raptorflow.models import ThreatActor


class ThreatActorRepository(ContextRepository[ThreatActor]):
    """Threat actors of one organization."""

    model = ThreatActor
    sort_keys: ClassVar[dict[str, SortKey]] = {
        "name": SortKey(ThreatActor.name, "str"),
        "created_at": SortKey(ThreatActor.created_at, "datetime"),
        "updated_at": SortKey(ThreatActor.updated_at, "datetime"),
        "first_seen": SortKey(ThreatActor.first_seen, "datetime", nullable=True),
        "last_seen": SortKey(ThreatActor.last_seen, "datetime", nullable=True),
    }
    text_columns = ("name", "description")
    list_columns = ("aliases",)

    def kind_conditions(self, extra: dict[str, Any]) -> list[ColumnElement[bool]]:
        """Country and motivation filters."""
        out: list[ColumnElement[bool]] = []
        if extra.get("country"):
            out.append(ThreatActor.country == extra["country"])
        if extra.get("motivation"):
            out.append(ThreatActor.motivation == extra["motivation"])
        return out

    async def by_attack_group(self, group_id: str) -> ThreatActor | None:
        """The actor imported from an ATT&CK group, if any."""
        return await self.session.scalar(
            self.scoped(select(ThreatActor).where(ThreatActor.attack_group_id == group_id)).limit(1)
        )
