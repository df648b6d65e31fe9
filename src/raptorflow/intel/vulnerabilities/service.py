"""Rules of vulnerabilities: CVE id shape, CVSS vectors parsed and scored by the cvss library."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from cvss import CVSS3, CVSS4, CVSSError

from raptorflow.intel.context_base import ContextService, Kind
from raptorflow.intel.vulnerabilities.repository import VulnerabilityRepository
from raptorflow.kit.errors import InvalidInput
from raptorflow.models import Vulnerability

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")


def normalize_cve(raw: str) -> str:
    """A CVE id upper-cased; 422 naming cve_id when it is not CVE-YYYY-NNNN+."""
    cve = raw.strip().upper()
    if not CVE_ID.match(cve):
        raise InvalidInput("cve_id", "must look like CVE-YYYY-NNNN (four or more digits after the year)")
    return cve


def score_v3(vector: str) -> tuple[str, float, str]:
    """(clean vector, score, lower-case severity) of a CVSS v3 vector; 422 with the library's reason."""
    try:
        parsed = CVSS3(vector.strip())
    except CVSSError as exc:
        raise InvalidInput("cvss_v3_vector", str(exc)) from None
    return parsed.clean_vector(), float(parsed.base_score), str(parsed.severities()[0]).lower()


def score_v4(vector: str) -> tuple[str, float, str]:
    """(clean vector, score, lower-case severity) of a CVSS v4 vector; 422 with the library's reason."""
    try:
        parsed = CVSS4(vector.strip())
    except CVSSError as exc:
        raise InvalidInput("cvss_v4_vector", str(exc)) from None
    return parsed.clean_vector(), float(parsed.base_score), str(parsed.severity).lower()


class VulnerabilityService(ContextService[Vulnerability, VulnerabilityRepository]):
    """Vulnerabilities of the caller's organization."""

    kind: ClassVar[Kind] = Kind(
        label="vulnerability",
        stix_type="vulnerability",
        unique="cve_id",
    )
    repo_class = VulnerabilityRepository
    model = Vulnerability

    def display_name(self, obj: Vulnerability) -> str:
        """The CVE id."""
        return obj.cve_id

    async def clean(self, values: dict[str, Any], current: Vulnerability | None) -> dict[str, Any]:
        """Common rules, the CVE id, and scores and severity recomputed whenever a vector changes."""
        out = await super().clean(values, current)
        if out.get("cve_id") is not None:
            out["cve_id"] = normalize_cve(out["cve_id"])
        if "cvss_v3_vector" not in out and "cvss_v4_vector" not in out:
            return out
        severities: dict[str, str] = {}
        for version, scorer in (("v3", score_v3), ("v4", score_v4)):
            key = f"cvss_{version}_vector"
            vector = out[key] if key in out else getattr(current, key, None)
            if vector is None:
                out[key], out[f"cvss_{version}_score"] = None, None
                continue
            out[key], out[f"cvss_{version}_score"], severities[version] = scorer(vector)
        out["severity"] = severities.get("v4", severities.get("v3"))
        return out
