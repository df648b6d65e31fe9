"""SQL of vulnerabilities."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ColumnElement, func

from raptorflow.intel.context_base import ContextRepository, SortKey
from raptorflow.models import Vulnerability


class VulnerabilityRepository(ContextRepository[Vulnerability]):
    """Vulnerabilities of one organization."""

    model = Vulnerability
    sort_keys: ClassVar[dict[str, SortKey]] = {
        "cve_id": SortKey(Vulnerability.cve_id, "str"),
        "created_at": SortKey(Vulnerability.created_at, "datetime"),
        "updated_at": SortKey(Vulnerability.updated_at, "datetime"),
        "published": SortKey(Vulnerability.published, "datetime", nullable=True),
        "cvss_v3_score": SortKey(Vulnerability.cvss_v3_score, "float", nullable=True),
        "cvss_v4_score": SortKey(Vulnerability.cvss_v4_score, "float", nullable=True),
        "epss": SortKey(Vulnerability.epss, "float", nullable=True),
    }
    text_columns = ("cve_id", "description")

    def kind_conditions(self, extra: dict[str, Any]) -> list[ColumnElement[bool]]:
        """KEV, minimum CVSS score (v4 when scored, else v3) and severity filters."""
        out: list[ColumnElement[bool]] = []
        if extra.get("kev") is not None:
            out.append(Vulnerability.kev.is_(bool(extra["kev"])))
        if extra.get("min_cvss") is not None:
            score = func.coalesce(Vulnerability.cvss_v4_score, Vulnerability.cvss_v3_score)
            out.append(score >= float(extra["min_cvss"]))
        if extra.get("severity"):
            out.append(Vulnerability.severity == extra["severity"])
        return out
