"""Request and response bodies of the vulnerabilities API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import AwareDatetime, Field

from raptorflow.intel.context_base import ContextCreate, ContextOut, ContextUpdate

CVE_HELP = "CVE-YYYY-NNNN (four or more digits), stored upper-case"
# What service.normalize_cve accepts (any case), for the document.
CVE_SCHEMA: dict[str, Any] = {"pattern": "^[Cc][Vv][Ee]-[0-9]{4}-[0-9]{4,}$"}
V3_HELP = "CVSS v3.0/v3.1 vector, e.g. CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H; scored by the server"
V4_HELP = "CVSS v4.0 vector, e.g. CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"


class Severity(StrEnum):
    """CVSS qualitative severity, lower-case."""

    none = "none"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class VulnerabilityCreate(ContextCreate):
    """A new vulnerability (one per CVE id in the organization); scores are computed, never sent."""

    cve_id: str = Field(min_length=1, max_length=32, description=CVE_HELP, json_schema_extra=CVE_SCHEMA)
    cvss_v3_vector: str | None = Field(default=None, max_length=200, description=V3_HELP)
    cvss_v4_vector: str | None = Field(default=None, max_length=300, description=V4_HELP)
    kev: bool = Field(default=False, description="Listed in CISA's Known Exploited Vulnerabilities catalog")
    epss: float | None = Field(default=None, ge=0, le=1, description="EPSS probability (0-1)")
    published: AwareDatetime | None = None


class VulnerabilityUpdate(ContextUpdate):
    """Vulnerability fields to change; null clears a vector (and its score) or EPSS."""

    not_null: ClassVar[frozenset[str]] = frozenset({"cve_id", "kev", "description", "tags", "tlp"})
    cve_id: str | None = Field(
        default=None, min_length=1, max_length=32, description=CVE_HELP, json_schema_extra=CVE_SCHEMA
    )
    cvss_v3_vector: str | None = Field(default=None, max_length=200, description=V3_HELP)
    cvss_v4_vector: str | None = Field(default=None, max_length=300, description=V4_HELP)
    kev: bool | None = None
    epss: float | None = Field(default=None, ge=0, le=1)
    published: AwareDatetime | None = None


class VulnerabilityOut(ContextOut):
    """A vulnerability with the scores the cvss library computed from its vectors."""

    cve_id: str
    cvss_v3_vector: str | None
    cvss_v3_score: float | None
    cvss_v4_vector: str | None
    cvss_v4_score: float | None
    severity: str | None = Field(description="From the v4 vector when there is one, else from the v3 vector")
    kev: bool
    epss: float | None
    published: datetime | None
