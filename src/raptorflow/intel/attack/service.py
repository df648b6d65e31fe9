"""The ATT&CK catalog: load a bundle idempotently, browse what is shown, answer other packages' questions."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.intel.attack import navigator
from raptorflow.intel.attack.loader import ParsedBundle
from raptorflow.intel.attack.repository import AttackRepository
from raptorflow.intel.attack.schemas import domain_rank
from raptorflow.kit.db import utcnow
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.models import AttackObject, AttackRelationship

# The Enterprise matrix's column order (its x-mitre-matrix `tactic_refs`, v18.1). The catalog keeps no
# position column, so tactics of other matrices (mobile, ICS) sort by these where they share a
# shortname, the others after them by external id.
KILL_CHAIN_ORDER = (
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
)
_POSITION = {shortname: i for i, shortname in enumerate(KILL_CHAIN_ORDER)}
TACTIC_ID = re.compile(r"^TA\d{4}$")
KIND_ORDER = ("tactic", "technique", "group", "software", "mitigation")


@dataclass
class SyncSummary:
    """What one load did: shown objects per kind in the bundle, and what got hidden."""

    domain: str
    attack_version: str | None
    shown: dict[str, int]
    subtechniques: int
    relationships: int
    hidden_in_bundle: int
    withdrawn: int
    withdrawn_relationships: int
    skipped: int

    def line(self) -> str:
        """One human line, e.g. for the CLI."""
        parts = []
        for kind in KIND_ORDER:
            part = f"{self.shown.get(kind, 0)} {'software' if kind == 'software' else kind + 's'}"
            if kind == "technique":
                part += f" ({self.subtechniques} sub-techniques)"
            parts.append(part)
        release = f" (ATT&CK {self.attack_version})" if self.attack_version else ""
        return (
            f"attack sync {self.domain}{release}: {', '.join(parts)}, "
            f"{self.relationships} relationships; hidden: {self.hidden_in_bundle} revoked or deprecated, "
            f"{self.withdrawn} objects and {self.withdrawn_relationships} relationships no longer in the "
            f"bundle; {self.skipped} objects skipped"
        )


@dataclass
class TechniqueDetail:
    """A technique and what links to it."""

    technique: AttackObject
    parent: AttackObject | None
    subtechniques: Sequence[AttackObject]
    tactics: list[AttackObject]
    groups: list[AttackObject]
    software: list[AttackObject]
    mitigations: list[AttackObject]


@dataclass
class GroupDetail:
    """A group, the techniques and the software it uses."""

    group: AttackObject
    techniques: list[AttackObject]
    software: list[AttackObject]


@dataclass
class SoftwareDetail:
    """Software, the techniques it uses and the groups that use it."""

    software: AttackObject
    techniques: list[AttackObject]
    groups: list[AttackObject]


def _search_term(q: str | None) -> str | None:
    """The stripped search text; a NUL in it is the client's mistake (422), on every database."""
    if q and "\x00" in q:
        raise InvalidInput("q", "must not contain a NUL character (U+0000)")
    return q.strip() if q else None


def normalize_id(raw: str) -> str:
    """An ATT&CK id as stored: trimmed, upper case (t1059.001 → T1059.001)."""
    return raw.strip().upper()


def tactic_sort_key(tactic: AttackObject) -> tuple[int, int, str, str]:
    """Domain (Navigator order), kill-chain position, then external id."""
    position = _POSITION.get(tactic.shortname or "", len(_POSITION))
    return domain_rank(tactic.domain), position, tactic.external_id or "", tactic.stix_id


async def sync_bundle(session: AsyncSession, bundle: ParsedBundle) -> SyncSummary:
    """Upsert a parsed bundle; hide what it revokes or deprecates and what it no longer contains."""
    repo = AttackRepository(session)
    visible_objects = await repo.visible_object_ids(bundle.domain)
    visible_relationships = await repo.visible_relationship_ids(bundle.domain)
    await repo.upsert_objects(list(bundle.objects.values()))
    await repo.upsert_relationships(list(bundle.relationships.values()))
    gone_objects = visible_objects - bundle.objects.keys()
    gone_relationships = visible_relationships - bundle.relationships.keys()
    await repo.hide(AttackObject, bundle.domain, sorted(gone_objects))
    await repo.hide(AttackRelationship, bundle.domain, sorted(gone_relationships))
    await repo.record_domain(bundle.domain, bundle.attack_version, utcnow())
    shown = [row for row in bundle.objects.values() if not row["hidden"]]
    return SyncSummary(
        domain=bundle.domain,
        attack_version=bundle.attack_version,
        shown=dict(Counter(row["kind"] for row in shown)),
        subtechniques=sum(1 for row in shown if row["parent_external_id"]),
        relationships=sum(1 for row in bundle.relationships.values() if not row["hidden"]),
        hidden_in_bundle=len(bundle.objects) - len(shown),
        withdrawn=len(gone_objects),
        withdrawn_relationships=len(gone_relationships),
        skipped=bundle.skipped,
    )


async def tactics(session: AsyncSession, domain: str | None = None) -> list[AttackObject]:
    """Shown tactics (of one domain when given), by domain then in kill-chain order."""
    return sorted(await AttackRepository(session).tactics(domain), key=tactic_sort_key)


async def _get(session: AsyncSession, kind: str, raw_id: str, domain: str | None = None) -> AttackObject:
    found = await AttackRepository(session).by_external_id(kind, normalize_id(raw_id), domain)
    if found is None:
        where = f" in {domain}" if domain else ""
        raise NotFound(f"No ATT&CK {kind} {raw_id.strip()[:32]!r}{where}.")
    return found


async def technique_page(
    session: AsyncSession,
    *,
    after: tuple[str, str] | None,
    limit: int,
    q: str | None,
    tactic: str | None,
    platform: str | None,
    include_subtechniques: bool,
    domain: str | None = None,
) -> Sequence[AttackObject]:
    """Shown techniques by external id; `tactic` is a shortname (execution) or a tactic id (TA0002).

    Domains reuse tactic shortnames (ICS has its own "collection"): a tactic id also narrows the list to
    its domain, a shortname matches in every domain unless `domain` is given.
    """
    repo = AttackRepository(session)
    shortname = tactic.strip().lower() if tactic else None
    if tactic and TACTIC_ID.match(normalize_id(tactic)):
        found = await repo.by_external_id("tactic", normalize_id(tactic), domain)
        if found is None or not found.shortname:
            return []
        shortname, domain = found.shortname, found.domain
    return await repo.page(
        "technique",
        after=after,
        limit=limit,
        q=_search_term(q),
        tactic=shortname,
        platform=platform.strip() if platform else None,
        include_subtechniques=include_subtechniques,
        domain=domain,
    )


async def technique_detail(
    session: AsyncSession, technique_id: str, domain: str | None = None
) -> TechniqueDetail:
    """A shown technique with its parent, sub-techniques, tactics, users and mitigations, in its domain."""
    repo = AttackRepository(session)
    technique = await _get(session, "technique", technique_id, domain)
    domain = technique.domain
    parent = (
        await repo.by_external_id("technique", technique.parent_external_id, domain)
        if technique.parent_external_id
        else None
    )
    subtechniques = (
        await repo.subtechniques(technique.external_id, domain)
        if technique.external_id and not technique.parent_external_id
        else []
    )
    by_shortname = {t.shortname: t for t in await repo.tactics_by_shortname(technique.tactics, domain)}
    return TechniqueDetail(
        technique=technique,
        parent=parent,
        subtechniques=subtechniques,
        tactics=[by_shortname[s] for s in technique.tactics if s in by_shortname],
        groups=await repo.related(technique.stix_id, "uses", direction="in", kinds=["group"], domain=domain),
        software=await repo.related(
            technique.stix_id, "uses", direction="in", kinds=["software"], domain=domain
        ),
        mitigations=await repo.related(
            technique.stix_id, "mitigates", direction="in", kinds=["mitigation"], domain=domain
        ),
    )


async def object_page(
    session: AsyncSession,
    kind: str,
    *,
    after: tuple[str, str] | None,
    limit: int,
    q: str | None,
    domain: str | None = None,
) -> Sequence[AttackObject]:
    """Shown groups or software by external id; `q` matches name, id or an alias."""
    return await AttackRepository(session).page(
        kind, after=after, limit=limit, q=_search_term(q), search_aliases=True, domain=domain
    )


async def domains_of(session: AsyncSession, objects: Sequence[AttackObject]) -> dict[str, list[str]]:
    """The domains in which each object (by STIX id) is shown."""
    return await AttackRepository(session).domains_of([o.stix_id for o in objects])


async def group_detail(session: AsyncSession, group_id: str) -> GroupDetail:
    """A shown group with the techniques and software it uses."""
    repo = AttackRepository(session)
    group = await _get(session, "group", group_id)
    return GroupDetail(
        group=group,
        techniques=await repo.related(group.stix_id, "uses", direction="out", kinds=["technique"]),
        software=await repo.related(group.stix_id, "uses", direction="out", kinds=["software"]),
    )


async def software_detail(session: AsyncSession, software_id: str) -> SoftwareDetail:
    """Shown software with the techniques it uses and the groups that use it."""
    repo = AttackRepository(session)
    software = await _get(session, "software", software_id)
    return SoftwareDetail(
        software=software,
        techniques=await repo.related(software.stix_id, "uses", direction="out", kinds=["technique"]),
        groups=await repo.related(software.stix_id, "uses", direction="in", kinds=["group"]),
    )


async def group_techniques(session: AsyncSession, group_id: str) -> tuple[AttackObject, list[str]]:
    """A shown group and the sorted external ids of the techniques it uses; NotFound if unknown or hidden."""
    group = await _get(session, "group", group_id)
    used = await AttackRepository(session).related(
        group.stix_id, "uses", direction="out", kinds=["technique"]
    )
    return group, sorted({t.external_id for t in used if t.external_id})


async def visible_counts(session: AsyncSession) -> dict[str, int]:
    """Shown objects per kind and shown relationships (for operators and tests)."""
    return await AttackRepository(session).count_visible()


async def techniques_by_domain(session: AsyncSession, technique_ids: list[str]) -> dict[str, list[str]]:
    """The listed technique ids per ATT&CK domain of the catalog (unknown ids count as Enterprise)."""
    known = await AttackRepository(session).technique_domains(navigator.normalized(technique_ids))
    return navigator.split_by_domain(technique_ids, known)


async def main_domain_of(session: AsyncSession, technique_ids: list[str]) -> str:
    """The domain an object's techniques mostly belong to: its layer's and its matrix's default."""
    return navigator.main_domain(await techniques_by_domain(session, technique_ids))


async def navigator_layer(
    session: AsyncSession, name: str, description: str, technique_ids: list[str], domain: str | None
) -> dict[str, Any]:
    """A Navigator layer of the listed techniques in one domain (by default the one holding most)."""
    by_domain = await techniques_by_domain(session, technique_ids)
    chosen = domain or navigator.main_domain(by_domain)
    version = await AttackRepository(session).attack_version(chosen)
    return navigator.layer(
        name,
        description,
        by_domain.get(chosen, []),
        domain=chosen,
        attack_version=navigator.release_major(version),
        elsewhere={d: len(set(ids)) for d, ids in by_domain.items() if d != chosen},
    )
