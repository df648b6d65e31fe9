"""HTTP routes of the ATT&CK catalog: tactics, techniques, groups, software (read-only, org members)."""

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
    AttackRef,
    GroupOut,
    GroupSummary,
    SoftwareOut,
    SoftwareSummary,
    TacticOut,
    TacticRef,
    TechniqueOut,
    TechniqueSummary,
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
    return AttackRef(id=obj.external_id or obj.stix_id, name=obj.name, url=obj.url)


def _refs(objs: Sequence[AttackObject]) -> list[AttackRef]:
    return [_ref(o) for o in objs]


def _tactic_ref(obj: AttackObject) -> TacticRef:
    return TacticRef(id=obj.external_id or obj.stix_id, name=obj.name, url=obj.url, shortname=obj.shortname)


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
        url=obj.url,
        modified=obj.modified,
    )


def _group_summary(obj: AttackObject) -> GroupSummary:
    return GroupSummary(
        id=obj.external_id or obj.stix_id,
        stix_id=obj.stix_id,
        name=obj.name,
        aliases=obj.aliases,
        url=obj.url,
        modified=obj.modified,
    )


def _software_summary(obj: AttackObject) -> SoftwareSummary:
    return SoftwareSummary(
        id=obj.external_id or obj.stix_id,
        stix_id=obj.stix_id,
        name=obj.name,
        software_type=_software_type(obj),
        aliases=obj.aliases,
        platforms=obj.platforms,
        url=obj.url,
        modified=obj.modified,
    )


@router.get("/tactics", summary="ATT&CK tactics in kill-chain order")
async def list_tactics(ctx: IntelRead, session: SessionDep) -> Page[TacticOut]:
    """Every shown tactic, in the order of the matrix columns."""
    items = [
        TacticOut(
            id=t.external_id or t.stix_id,
            name=t.name,
            url=t.url,
            shortname=t.shortname,
            stix_id=t.stix_id,
            description=t.description,
            modified=t.modified,
        )
        for t in await service.tactics(session)
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
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[TechniqueSummary]:
    """Shown techniques and sub-techniques by id."""
    rows = await service.technique_page(
        session,
        after=_after(cursor),
        limit=limit,
        q=q,
        tactic=tactic,
        platform=platform,
        include_subtechniques=include_subtechniques,
    )
    return Page[TechniqueSummary](items=[_technique_summary(r) for r in rows], next_cursor=_next(rows, limit))


@router.get("/techniques/{technique_id}", responses=NOT_FOUND, summary="One ATT&CK technique (T1059.001)")
async def get_technique(technique_id: str, ctx: IntelRead, session: SessionDep) -> TechniqueOut:
    """A technique with its sub-techniques, tactics, the groups and software that use it, mitigations."""
    detail = await service.technique_detail(session, technique_id)
    summary = _technique_summary(detail.technique)
    return TechniqueOut(
        **summary.model_dump(),
        description=detail.technique.description,
        domain=detail.technique.domain,
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
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[GroupSummary]:
    """Shown groups by id."""
    rows = await service.object_page(session, "group", after=_after(cursor), limit=limit, q=q)
    return Page[GroupSummary](items=[_group_summary(r) for r in rows], next_cursor=_next(rows, limit))


@router.get("/groups/{group_id}", responses=NOT_FOUND, summary="One ATT&CK group (G0007)")
async def get_group(group_id: str, ctx: IntelRead, session: SessionDep) -> GroupOut:
    """A group with the techniques and software it uses."""
    detail = await service.group_detail(session, group_id)
    return GroupOut(
        **_group_summary(detail.group).model_dump(),
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
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[SoftwareSummary]:
    """Shown software by id."""
    rows = await service.object_page(session, "software", after=_after(cursor), limit=limit, q=q)
    return Page[SoftwareSummary](items=[_software_summary(r) for r in rows], next_cursor=_next(rows, limit))


@router.get("/software/{software_id}", responses=NOT_FOUND, summary="One ATT&CK software (S0002)")
async def get_software(software_id: str, ctx: IntelRead, session: SessionDep) -> SoftwareOut:
    """Software with the techniques it uses and the groups that use it."""
    detail = await service.software_detail(session, software_id)
    return SoftwareOut(
        **_software_summary(detail.software).model_dump(),
        description=detail.software.description,
        domain=detail.software.domain,
        techniques=_refs(detail.techniques),
        groups=_refs(detail.groups),
    )
