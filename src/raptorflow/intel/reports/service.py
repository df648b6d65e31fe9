"""Rules of reports: references to objects of the same organization, resolved to names on the way out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from raptorflow.intel.context_base import ContextService, Kind
from raptorflow.intel.reports.repository import ReportRepository
from raptorflow.kit.errors import InvalidInput, UnknownReference
from raptorflow.models import Report


class ReportService(ContextService[Report, ReportRepository]):
    """Reports of the caller's organization."""

    kind: ClassVar[Kind] = Kind(
        label="report",
        stix_type="report",
    )
    repo_class = ReportRepository
    model = Report

    def display_name(self, obj: Report) -> str:
        """The title."""
        return obj.title

    async def clean(self, values: dict[str, Any], current: Report | None) -> dict[str, Any]:
        """Common rules, and every object reference must exist in this org (422 naming object_refs[i])."""
        out = await super().clean(values, current)
        if out.get("object_refs") is not None:
            out["object_refs"] = await self._checked_refs(out["object_refs"], current)
        return out

    async def _checked_refs(self, refs: list[dict[str, Any]], current: Report | None) -> list[dict[str, str]]:
        pairs = [(str(ref["type"]), uuid.UUID(str(ref["id"]))) for ref in refs]
        known = await self.repo.names(pairs)
        kept: list[dict[str, str]] = []
        seen: set[tuple[str, uuid.UUID]] = set()
        for i, (kind, object_id) in enumerate(pairs):
            if current is not None and kind == "report" and object_id == current.id:
                raise InvalidInput(f"object_refs[{i}]", "a report cannot reference itself")
            if (kind, object_id) not in known:
                # Same message for another org's id and a random one: nothing about other orgs leaks.
                raise UnknownReference(f"object_refs[{i}]", kind)
            if (kind, object_id) not in seen:
                seen.add((kind, object_id))
                kept.append({"type": kind, "id": str(object_id)})
        return kept

    async def ref_names(self, reports: Sequence[Report]) -> dict[tuple[str, uuid.UUID], str]:
        """Names of everything these reports reference (deleted objects are absent)."""
        pairs = [(ref["type"], uuid.UUID(ref["id"])) for r in reports for ref in r.object_refs]
        return await self.repo.names(pairs) if pairs else {}
