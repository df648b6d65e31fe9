"""HTTP routes of the ATT&CK catalog: tactics, techniques, groups, software (read-only, org members).

Every list takes `domain=` (enterprise-attack, mobile-attack, ics-attack). Without it, techniques and
tactics of every loaded domain are listed (each belongs to one), and a group or software published in
several domains is listed once with all its `domains`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.attack import service
from raptorflow.intel.attack.schemas import (
    DOMAIN_DESCRIPTION,
    AttackRef,
    DomainName,
    GroupOut,
    GroupSummary,
    SoftwareOut,
    SoftwareSummary,
    TacticOut,
    TacticRef,
    TechniqueOut,
    TechniqueSummary,
    domain_rank,
)
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.kit.types import NO_NUL
from raptorflow.models import AttackObject

router = APIRouter(prefix="/api/v1/attack", tags=["attack"])

IntelRead = Annotated[OrgContext, require(Permission.intel_read)]
SearchParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Case-insensitive substring of the name or id.",
        json_schema_extra={"pattern": NO_NUL},
    ),
]
DomainParam = Annotated[DomainName | None, Query(description=DOMAIN_DESCRIPTION + " Default: all.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such (shown) ATT&CK object"}}


def _after(cursor: str | None) -> tuple[str, str] | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    external_id, stix_id = position.get("after"), position.get("sid")
    if not isinstance(external_id, str) or not isinstance(stix_id, str):
        raise InvalidInput("cursor", "not a cursor returned by this API")
    return external_id, stix_id


def _next(rows: Sequence[AttackObject], limit: int) -> str | None:
    if len(rows) < limit:
        return None
    return encode_cursor({"after": rows[-1].external_id, "sid": rows[-1].stix_id})


def _ref(obj: AttackObject) -> AttackRef:
    return AttackRef(id=obj.external_id or obj.stix_id, name=obj.name, domain=obj.domain, url=obj.url)


def _refs(objs: Sequence[AttackObject]) -> list[AttackRef]:
    return [_ref(o) for o in objs]


def _tactic_ref(obj: AttackObject) -> TacticRef:
    return TacticRef(
        id=obj.external_id or obj.stix_id,
        name=obj.name,
        domain=obj.domain,
        url=obj.url,
        shortname=obj.shortname,
    )


def _software_type(obj: AttackObject) -> Literal["malware", "tool"]:
    return "tool" if obj.stix_id.startswith("tool--") else "malware"


def _technique_summary(obj: AttackObject) -> TechniqueSummary:
    return TechniqueSummary(
        id=obj.external_id or obj.stix_id,
        stix_id=obj.stix_id,
        name=obj.name,
        tactics=obj.tactics,
        platforms=obj.platforms,
        is_subtechnique=obj.parent_external_id is not None,
        parent_id=obj.parent_external_id,
        domain=obj.domain,
        url=obj.url,
        modified=obj.modified,
    )


def _domains(obj: AttackObject, domains: dict[str, list[str]]) -> list[str]:
    return sorted(domains.get(obj.stix_id) or [obj.domain], key=domain_rank)


def _group_summary(obj: AttackObject, domains: dict[str, list[str]]) -> GroupSummary:
    return GroupSummary(
        id=obj.external_id or obj.stix_id,
        stix_id=obj.stix_id,
        name=obj.name,
        aliases=obj.aliases,
        domains=_domains(obj, domains),
        url=obj.url,
        modified=obj.modified,
    )


def _software_summary(obj: AttackObject, domains: dict[str, list[str]]) -> SoftwareSummary:
    return SoftwareSummary(
        id=obj.external_id or obj.stix_id,
        stix_id=obj.stix_id,
        name=obj.name,
        software_type=_software_type(obj),
        aliases=obj.aliases,
        platforms=obj.platforms,
        domains=_domains(obj, domains),
        url=obj.url,
        modified=obj.modified,
    )


@router.get("/tactics", summary="ATT&CK tactics by domain, in kill-chain order")
async def list_tactics(ctx: IntelRead, session: SessionDep, domain: DomainParam = None) -> Page[TacticOut]:
    """Every shown tactic, by domain (Navigator order) then in the order of the matrix columns."""
    items = [
        TacticOut(
            id=t.external_id or t.stix_id,
            name=t.name,
            domain=t.domain,
            url=t.url,
            shortname=t.shortname,
            stix_id=t.stix_id,
            description=t.description,
            modified=t.modified,
        )
        for t in await service.tactics(session, domain)
    ]
    return Page[TacticOut](items=items, next_cursor=None)


@router.get("/techniques", summary="ATT&CK techniques, filtered and cursor-paged by id")
async def list_techniques(
    ctx: IntelRead,
    session: SessionDep,
    q: SearchParam = None,
    tactic: Annotated[
        str | None, Query(max_length=64, description="Tactic shortname (execution) or id (TA0002).")
    ] = None,
    platform: Annotated[str | None, Query(max_length=64, description="e.g. Windows, Linux, IaaS.")] = None,
    include_subtechniques: bool = True,
    domain: DomainParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[TechniqueSummary]:
    """Shown techniques and sub-techniques by id (a tactic id such as TA0100 also picks its domain)."""
    rows = await service.technique_page(
        session,
        after=_after(cursor),
        limit=limit,
        q=q,
        tactic=tactic,
        platform=platform,
        include_subtechniques=include_subtechniques,
        domain=domain,
    )
    return Page[TechniqueSummary](items=[_technique_summary(r) for r in rows], next_cursor=_next(rows, limit))


@router.get("/techniques/{technique_id}", responses=NOT_FOUND, summary="One ATT&CK technique (T1059.001)")
async def get_technique(
    technique_id: str,
    ctx: IntelRead,
    session: SessionDep,
    domain: Annotated[
        DomainName | None,
        Query(
            description=DOMAIN_DESCRIPTION + " Default: the Enterprise one when several domains have the id."
        ),
    ] = None,
) -> TechniqueOut:
    """A technique with its sub-techniques, tactics, the groups and software that use it, mitigations."""
    detail = await service.technique_detail(session, technique_id, domain)
    summary = _technique_summary(detail.technique)
    return TechniqueOut(
        **summary.model_dump(),
        description=detail.technique.description,
        parent=_ref(detail.parent) if detail.parent else None,
        subtechniques=_refs(detail.subtechniques),
        tactic_refs=[_tactic_ref(t) for t in detail.tactics],
        groups=_refs(detail.groups),
        software=_refs(detail.software),
        mitigations=_refs(detail.mitigations),
    )


@router.get("/groups", summary="ATT&CK groups, cursor-paged by id")
async def list_groups(
    ctx: IntelRead,
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Substring of the name, id or an alias.")
    ] = None,
    domain: DomainParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[GroupSummary]:
    """Shown groups by id, each once with the domains that publish it."""
    rows = await service.object_page(session, "group", after=_after(cursor), limit=limit, q=q, domain=domain)
    domains = await service.domains_of(session, rows)
    return Page[GroupSummary](
        items=[_group_summary(r, domains) for r in rows], next_cursor=_next(rows, limit)
    )


@router.get("/groups/{group_id}", responses=NOT_FOUND, summary="One ATT&CK group (G0007)")
async def get_group(group_id: str, ctx: IntelRead, session: SessionDep) -> GroupOut:
    """A group with the techniques and software it uses."""
    detail = await service.group_detail(session, group_id)
    return GroupOut(
        **_group_summary(detail.group, await service.domains_of(session, [detail.group])).model_dump(),
        description=detail.group.description,
        domain=detail.group.domain,
        techniques=_refs(detail.techniques),
        software=_refs(detail.software),
    )


@router.get("/software", summary="ATT&CK software (malware and tools), cursor-paged by id")
async def list_software(
    ctx: IntelRead,
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Substring of the name, id or an alias.")
    ] = None,
    domain: DomainParam = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[SoftwareSummary]:
    """Shown software by id, each once with the domains that publish it."""
    rows = await service.object_page(
        session, "software", after=_after(cursor), limit=limit, q=q, domain=domain
    )
    domains = await service.domains_of(session, rows)
    return Page[SoftwareSummary](
        items=[_software_summary(r, domains) for r in rows], next_cursor=_next(rows, limit)
    )


@router.get("/software/{software_id}", responses=NOT_FOUND, summary="One ATT&CK software (S0002)")
async def get_software(software_id: str, ctx: IntelRead, session: SessionDep) -> SoftwareOut:
    """Software with the techniques it uses and the groups that use it."""
    detail = await service.software_detail(session, software_id)
    return SoftwareOut(
        **_software_summary(
            detail.software, await service.domains_of(session, [detail.software])
        ).model_dump(),
        description=detail.software.description,
        domain=detail.software.domain,
        techniques=_refs(detail.techniques),
        groups=_refs(detail.groups),
    )
