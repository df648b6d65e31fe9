"""Rules of threat actors: STIX vocabularies, country codes, seen order, ATT&CK group import."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from raptorflow.intel.actors.repository import ThreatActorRepository
from raptorflow.intel.attack.service import group_techniques
from raptorflow.intel.common import TLP, technique_id_shape
from raptorflow.intel.context_base import ContextService, Kind, clean_aliases
from raptorflow.kit.db import new_id
from raptorflow.kit.errors import Conflict, InvalidInput
from raptorflow.models import ThreatActor

COUNTRY = re.compile(r"^[A-Z]{2}$")
GROUP_ID = re.compile(r"^G\d{4}$")


def normalize_country(raw: str, field: str = "country") -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased; 422 naming `field` when it is not two letters."""
    code = raw.strip().upper()
    if not COUNTRY.match(code):
        raise InvalidInput(field, "must be an ISO 3166-1 alpha-2 country code (two letters, e.g. RU)")
    return code


class ThreatActorService(ContextService[ThreatActor, ThreatActorRepository]):
    """Threat actors of the caller's organization."""

    kind: ClassVar[Kind] = Kind(
        label="threat actor",
        stix_type="threat-actor",
        unique="name",
    )
    repo_class = ThreatActorRepository
    model = ThreatActor

    async def clean(self, values: dict[str, Any], current: ThreatActor | None) -> dict[str, Any]:
        """Common rules plus vocabularies and the country code."""
        out = await super().clean(values, current)
        for name in ("motivation", "sophistication"):
            if out.get(name) is not None:
                out[name] = str(out[name])  # StrEnum members: their value
        if out.get("country") is not None:
            out["country"] = normalize_country(out["country"])
        return out

    async def import_group(self, group_id: str) -> tuple[ThreatActor, bool]:
        """The org's actor for an ATT&CK group, created from the catalog the first time (True when new)."""
        wanted = group_id.strip().upper()
        if not GROUP_ID.match(wanted):
            raise InvalidInput("group_id", "must be an ATT&CK group id such as G0007")
        existing = await self.repo.by_attack_group(wanted)
        if existing is not None:
            return existing, False
        group, techniques = await group_techniques(self.session, wanted)
        name = group.name[:200]
        holder = await self.repo.holder_of("name", name)
        if holder is not None:
            raise Conflict(
                f"A threat actor named {name!r} already exists and is not linked to {wanted}.",
                errors=[{"field": "name", "message": f"already used by {holder.id}"}],
            )
        actor = ThreatActor(
            id=new_id(),
            org_id=self.ctx.org_id,
            created_by=self.ctx.principal.user_id,
            # The intrusion-set keeps MITRE's STIX id: exports then name the same object ATT&CK does.
            stix_id=group.stix_id,
            name=name,
            aliases=[a for a in clean_aliases(list(group.aliases)) if a.lower() != name.lower()][:100],
            description=group.description or "",
            tags=[],
            # ATT&CK is public: nothing in the import needs a stricter marking.
            tlp=TLP.clear.value,
            attack_group_id=wanted,
            attack_techniques=technique_id_shape(techniques),
        )
        await self.repo.add(actor)
        return actor, True
