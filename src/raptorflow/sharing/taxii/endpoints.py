"""HTTP routes of TAXII 2.1: the collection API under /api/v1 and the TAXII server under /taxii2/.

Under /taxii2 every answer is `application/taxii+json;version=2.1`, errors included (TAXII error
objects, not problem+json). Callers authenticate with an org API key as the HTTP Basic password (any
user name) or as a Bearer token, or with a user's access token; an API root is an organization's slug,
and a slug that does not exist answers exactly like one the caller is not a member of.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from raptorflow.accounts.repository import OrganizationRepository
from raptorflow.auth.deps import AUTHENTICATED, PERMISSION_ATTR, authenticate, limit_key, require
from raptorflow.auth.permissions import MATRIX, Permission, Role, allows
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import Forbidden, InvalidInput, NotFound, RaptorFlowError, Unauthorized
from raptorflow.kit.logging import get_logger
from raptorflow.kit.tenancy import bind_org
from raptorflow.kit.web import ORJSONResponse
from raptorflow.models import TaxiiCollection
from raptorflow.sharing.stix import render
from raptorflow.sharing.taxii import service
from raptorflow.sharing.taxii.repository import TaxiiRepository, org_by_slug
from raptorflow.sharing.taxii.schemas import CollectionCreate, CollectionOut, CollectionUpdate

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
ACCEPTABLE = ("application/taxii+json", "application/json", "*/*", "application/*")
MAX_CONTENT_LENGTH = 10 * 1024 * 1024
log = get_logger("raptorflow.taxii")

# --- /api/v1/taxii-collections ---------------------------------------------------------------------

collections = APIRouter(prefix="/api/v1/taxii-collections", tags=["taxii"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Admin = Annotated[OrgContext, require(Permission.intel_admin)]


async def _slug(session: Any, org_id: uuid.UUID) -> str:
    org = await OrganizationRepository(session).get(org_id)
    assert org is not None
    return org.slug


def _out(row: TaxiiCollection, request: Request, slug: str) -> dict[str, Any]:
    public_url = request.app.state.settings.link_base
    return {
        "id": row.id,
        "title": row.title,
        "description": row.description,
        "filter": row.filter,
        "can_read": row.can_read,
        "can_write": row.can_write,
        "url": service.collection_url(public_url, slug, row.id),
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


@collections.post("", status_code=201, response_model=CollectionOut, summary="Define a TAXII collection")
async def create_collection(
    body: CollectionCreate, request: Request, ctx: Admin, session: SessionDep
) -> ORJSONResponse:
    """Admins choose which intelligence a collection serves and whether clients may read or write it."""
    row = await service.CollectionService(session, ctx).create(body)
    return ORJSONResponse(
        _out(row, request, await _slug(session, ctx.org_id)),
        status_code=201,
        headers={"Location": f"/api/v1/taxii-collections/{row.id}"},
    )


@collections.get("", summary="List the organization's TAXII collections")
async def list_collections(request: Request, ctx: Reader, session: SessionDep) -> ORJSONResponse:
    """Every collection of the org (at most a few hundred), oldest first."""
    rows = await TaxiiRepository(session, ctx.org_id).collections()
    slug = await _slug(session, ctx.org_id)
    return ORJSONResponse({"items": [_out(r, request, slug) for r in rows], "next_cursor": None})


@collections.get("/{collection_id}", response_model=CollectionOut, summary="One TAXII collection")
async def get_collection(
    collection_id: uuid.UUID, request: Request, ctx: Reader, session: SessionDep
) -> ORJSONResponse:
    """The collection and its TAXII URL."""
    row = await service.CollectionService(session, ctx).get(collection_id)
    return ORJSONResponse(_out(row, request, await _slug(session, ctx.org_id)))


@collections.patch("/{collection_id}", response_model=CollectionOut, summary="Change a TAXII collection")
async def update_collection(
    collection_id: uuid.UUID, body: CollectionUpdate, request: Request, ctx: Admin, session: SessionDep
) -> ORJSONResponse:
    """Title, description, filter (replaced whole), can_read, can_write."""
    row = await service.CollectionService(session, ctx).update(collection_id, body)
    return ORJSONResponse(_out(row, request, await _slug(session, ctx.org_id)))


@collections.delete("/{collection_id}", status_code=204, summary="Delete a TAXII collection")
async def delete_collection(collection_id: uuid.UUID, ctx: Admin, session: SessionDep) -> Response:
    """Clients lose the collection; the intelligence it served stays."""
    await service.CollectionService(session, ctx).delete(collection_id)
    return Response(status_code=204)


# --- /taxii2 ---------------------------------------------------------------------------------------


def taxii_error(status: int, title: str, description: str | None = None, headers: Any = None) -> Response:
    """A TAXII 2.1 error message."""
    body: dict[str, Any] = {"title": title, "http_status": str(status)}
    if description:
        body["description"] = description
    return Response(orjson.dumps(body), status_code=status, media_type=TAXII_MEDIA_TYPE, headers=headers)


class TaxiiRoute(APIRoute):
    """Routes whose every error is a TAXII error message."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The FastAPI handler, with errors rendered the TAXII way."""
        handler = super().get_route_handler()

        async def taxii_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RaptorFlowError as exc:
                headers = dict(exc.headers)
                if exc.status == 401:
                    headers["WWW-Authenticate"] = 'Basic realm="RaptorFlow TAXII", Bearer'
                detail = exc.detail
                if exc.errors:
                    detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors)
                return taxii_error(exc.status, exc.title, detail, headers or None)
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()
                )
                return taxii_error(400, "Bad Request", detail)
            except StarletteHTTPException as exc:
                return taxii_error(exc.status_code, "Error", str(exc.detail))

        return taxii_handler


server = APIRouter(prefix="/taxii2", route_class=TaxiiRoute, tags=["taxii2"])


@dataclass(frozen=True)
class TaxiiContext:
    """The caller inside the organization an API root names."""

    org: OrgContext
    slug: str
    name: str


async def _principal(request: Request, session: Any) -> Principal:
    """authenticate(), also reading an API key sent as the HTTP Basic password."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("The Basic credentials are malformed.") from None
        secret = decoded.partition(":")[2].strip()
        if not secret:
            raise Unauthorized("Send an API key as the Basic password.")
        scope = dict(request.scope)
        scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"authorization"] + [
            (b"authorization", b"Bearer " + secret.encode())
        ]
        request = Request(scope, request.receive)
    return await authenticate(request, session)


def _accepts(request: Request) -> None:
    accept = request.headers.get("accept")
    if accept and not any(kind in accept for kind in ACCEPTABLE):
        raise RaptorFlowError(f"This server answers {TAXII_MEDIA_TYPE}.", status=406, title="Not Acceptable")


def taxii_access(permission: Permission) -> Any:
    """Dependency: the caller holds `permission` in the org whose slug is the API root."""

    async def dependency(
        request: Request, session: SessionDep, api_root: Annotated[str, Path(max_length=63)]
    ) -> TaxiiContext:
        _accepts(request)
        principal = await _principal(request, session)
        found = await org_by_slug(session, api_root)
        if found is None:
            raise NotFound()
        org_id, name = found
        await bind_org(session, org_id)
        if principal.key_org_id is not None:
            if principal.key_org_id != org_id:
                raise NotFound()
            assert principal.key_role is not None
            role = principal.key_role
        else:
            assert principal.user_id is not None
            value = await IdentityRepository(session).role_in(principal.user_id, org_id)
            if value is None:
                raise NotFound()
            role = Role(value)
        request.state.org_id = org_id
        # The same limits as every org route: per org, per credential, the monthly quota.
        await request.app.state.request_limits.check_org(request.scope, org_id, limit_key(principal))
        if not allows(role, permission):
            raise Forbidden(f"This action needs the {MATRIX[permission].value} role; yours is {role.value}.")
        return TaxiiContext(OrgContext(principal=principal, org_id=org_id, role=role), api_root, name)

    setattr(dependency, PERMISSION_ATTR, permission.value)
    return Depends(dependency)


async def _discovery_caller(request: Request, session: SessionDep) -> Principal:
    _accepts(request)
    principal = await _principal(request, session)
    await request.app.state.request_limits.check_user(request.scope, limit_key(principal))
    return principal


setattr(_discovery_caller, PERMISSION_ATTR, AUTHENTICATED)
TaxiiReader = Annotated[TaxiiContext, taxii_access(Permission.intel_read)]
TaxiiWriter = Annotated[TaxiiContext, taxii_access(Permission.intel_write)]
Caller = Annotated[Principal, Depends(_discovery_caller)]


def _taxii(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=TAXII_MEDIA_TYPE, headers=headers)


def _root_url(request: Request, slug: str) -> str:
    return f"{request.app.state.settings.link_base}/taxii2/{slug}/"


@server.get("/", summary="TAXII 2.1 discovery")
async def discovery(request: Request, caller: Caller, session: SessionDep) -> Response:
    """The API roots (organizations) this caller can use."""
    if caller.key_org_id is not None:
        org = await OrganizationRepository(session).get(caller.key_org_id)
        slugs = [org.slug] if org is not None else []
    else:
        assert caller.user_id is not None
        slugs = [
            org.slug for org, _role in await OrganizationRepository(session).memberships_of(caller.user_id)
        ]
    body: dict[str, Any] = {
        "title": "RaptorFlow TAXII 2.1",
        "description": "One API root per organization; collections are defined by the organization's admins.",
        "api_roots": [_root_url(request, s) for s in slugs],
    }
    if len(slugs) == 1:
        body["default"] = body["api_roots"][0]
    return _taxii(body)


@server.get("/{api_root}/", summary="TAXII 2.1 API root (an organization)")
async def api_root_info(ctx: TaxiiReader) -> Response:
    """The API root's title and what it speaks."""
    return _taxii(
        {
            "title": ctx.name,
            "description": f"RaptorFlow intelligence of {ctx.name}",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": MAX_CONTENT_LENGTH,
        }
    )


def _collection_resource(row: TaxiiCollection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(row.id),
        "title": row.title,
        "can_read": row.can_read,
        "can_write": row.can_write,
        "media_types": [service.STIX_MEDIA_TYPE],
    }
    if row.description:
        out["description"] = row.description
    return out


@server.get("/{api_root}/collections/", summary="TAXII 2.1 collections")
async def taxii_collections(ctx: TaxiiReader, session: SessionDep) -> Response:
    """The organization's collections."""
    rows = await TaxiiRepository(session, ctx.org.org_id).collections()
    return _taxii({"collections": [_collection_resource(r) for r in rows]} if rows else {})


async def _collection(session: Any, ctx: TaxiiContext, collection_id: str) -> TaxiiCollection:
    try:
        parsed = uuid.UUID(collection_id)
    except ValueError:
        raise NotFound() from None
    row = await TaxiiRepository(session, ctx.org.org_id).collection(parsed)
    if row is None:
        raise NotFound()
    return row


CollectionId = Annotated[str, Path(max_length=64)]
AddedAfter = Annotated[
    str | None,
    Query(max_length=64, description="RFC 3339 timestamp", json_schema_extra={"format": "date-time"}),
]
Limit = Annotated[int | None, Query(ge=0, le=100_000, description="page size; 0 or absent = 1000")]
Next = Annotated[str | None, Query(max_length=512)]
MatchList = list[str] | None


@server.get("/{api_root}/collections/{collection_id}/", summary="TAXII 2.1 collection")
async def taxii_collection(collection_id: CollectionId, ctx: TaxiiReader, session: SessionDep) -> Response:
    """One collection."""
    return _taxii(_collection_resource(await _collection(session, ctx, collection_id)))


async def _readable(session: Any, ctx: TaxiiContext, collection_id: str) -> TaxiiCollection:
    row = await _collection(session, ctx, collection_id)
    if not row.can_read:
        raise Forbidden("This collection cannot be read.")
    return row


async def _read_page(
    session: Any,
    ctx: TaxiiContext,
    collection_id: str,
    match: service.Match,
    limit: int | None,
    next_: str | None,
) -> service.Page:
    row = await _readable(session, ctx, collection_id)
    reader = service.TaxiiReader(session, ctx.org.org_id, ctx.name)
    return await reader.page(row, match, limit or service.MAX_PAGE, next_)


def _page_headers(page: service.Page) -> dict[str, str]:
    if not page.added:
        return {}
    return _added_headers(page.added[0], page.added[-1])


def _added_headers(first: datetime | None, last: datetime | None) -> dict[str, str]:
    if first is None or last is None:
        return {}
    return {
        "X-TAXII-Date-Added-First": render.ts_exact(first),
        "X-TAXII-Date-Added-Last": render.ts_exact(last),
    }


def _envelope(page: service.Page) -> dict[str, Any]:
    out: dict[str, Any] = {"more": page.more}
    if page.next:
        out["next"] = page.next
    if page.objects:
        out["objects"] = page.objects
    return out


@server.get("/{api_root}/collections/{collection_id}/objects/", summary="TAXII 2.1 get objects")
async def taxii_objects(
    collection_id: CollectionId,
    ctx: TaxiiReader,
    session: SessionDep,
    added_after: AddedAfter = None,
    limit: Limit = None,
    next: Next = None,
    match_type: Annotated[MatchList, Query(alias="match[type]", max_length=50)] = None,
    match_id: Annotated[MatchList, Query(alias="match[id]", max_length=1000)] = None,
    match_version: Annotated[MatchList, Query(alias="match[version]", max_length=50)] = None,
    match_spec_version: Annotated[MatchList, Query(alias="match[spec_version]", max_length=10)] = None,
) -> Response:
    """A page of the collection's objects in date-added order, with `more` and `next`."""
    match = service.parse_match(added_after, match_type, match_id, match_version, match_spec_version)
    row = await _readable(session, ctx, collection_id)
    reader = service.TaxiiReader(session, ctx.org.org_id, ctx.name)
    page = await reader.page_json(row, match, limit or service.MAX_PAGE, next)
    # The envelope as bytes: PostgreSQL's rendering of the objects is spliced in, never parsed.
    headers = _added_headers(page.first_added, page.last_added)
    return Response(page.envelope(), media_type=TAXII_MEDIA_TYPE, headers=headers)


@server.get("/{api_root}/collections/{collection_id}/manifest/", summary="TAXII 2.1 get object manifests")
async def taxii_manifest(
    collection_id: CollectionId,
    ctx: TaxiiReader,
    session: SessionDep,
    added_after: AddedAfter = None,
    limit: Limit = None,
    next: Next = None,
    match_type: Annotated[MatchList, Query(alias="match[type]", max_length=50)] = None,
    match_id: Annotated[MatchList, Query(alias="match[id]", max_length=1000)] = None,
    match_version: Annotated[MatchList, Query(alias="match[version]", max_length=50)] = None,
    match_spec_version: Annotated[MatchList, Query(alias="match[spec_version]", max_length=10)] = None,
) -> Response:
    """Id, date added, version and media type of each object of the page."""
    match = service.parse_match(added_after, match_type, match_id, match_version, match_spec_version)
    page = await _read_page(session, ctx, collection_id, match, limit, next)
    body: dict[str, Any] = {"more": page.more}
    if page.next:
        body["next"] = page.next
    if page.objects:
        body["objects"] = [
            service.manifest_entry(o, a) for o, a in zip(page.objects, page.added, strict=True)
        ]
    return _taxii(body, headers=_page_headers(page))


StixId = Annotated[str, Path(max_length=160)]


@server.get("/{api_root}/collections/{collection_id}/objects/{stix_id}/", summary="TAXII 2.1 get an object")
async def taxii_object(
    collection_id: CollectionId,
    stix_id: StixId,
    ctx: TaxiiReader,
    session: SessionDep,
    added_after: AddedAfter = None,
    limit: Limit = None,
    next: Next = None,
    match_version: Annotated[MatchList, Query(alias="match[version]", max_length=50)] = None,
    match_spec_version: Annotated[MatchList, Query(alias="match[spec_version]", max_length=10)] = None,
) -> Response:
    """The object (its latest version unless match[version] says otherwise); 404 when absent."""
    match = service.parse_match(added_after, None, [stix_id], match_version, match_spec_version)
    page = await _read_page(session, ctx, collection_id, match, limit, next)
    if not page.objects and not next:
        raise NotFound()
    return _taxii(_envelope(page), headers=_page_headers(page))


@server.get(
    "/{api_root}/collections/{collection_id}/objects/{stix_id}/versions/",
    summary="TAXII 2.1 get object versions",
)
async def taxii_versions(
    collection_id: CollectionId,
    stix_id: StixId,
    ctx: TaxiiReader,
    session: SessionDep,
    added_after: AddedAfter = None,
    match_spec_version: Annotated[MatchList, Query(alias="match[spec_version]", max_length=10)] = None,
) -> Response:
    """The versions this server holds of the object (one: the latest)."""
    match = service.parse_match(added_after, None, [stix_id], None, match_spec_version)
    page = await _read_page(session, ctx, collection_id, match, 1, None)
    if not page.objects:
        raise NotFound()
    entry = service.manifest_entry(page.objects[0], page.added[0])
    return _taxii({"more": False, "versions": [entry["version"]]}, headers=_page_headers(page))


ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["objects"],
    "properties": {"objects": {"type": "array", "items": {"type": "object"}}, "more": {"type": "boolean"}},
}


@server.post(
    "/{api_root}/collections/{collection_id}/objects/",
    status_code=202,
    summary="TAXII 2.1 add objects",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                # The media type TAXII 2.1 clients send (the body is read whatever the header says).
                TAXII_MEDIA_TYPE: {"schema": ENVELOPE_SCHEMA},
            },
        }
    },
)
async def taxii_add_objects(
    collection_id: CollectionId, request: Request, ctx: TaxiiWriter, session: SessionDep
) -> Response:
    """Import an envelope of STIX objects into a writable collection; answers a status resource."""
    row = await _collection(session, ctx, collection_id)
    if not row.can_write:
        raise Forbidden("This collection cannot be written to.")
    raw = await request.body()
    if len(raw) > MAX_CONTENT_LENGTH:
        raise RaptorFlowError(
            "The envelope is larger than max_content_length.", status=413, title="Too Large"
        )
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"not JSON: {exc}") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
        raise InvalidInput("objects", 'expected a TAXII envelope: {"objects": [...]}')
    status = await service.write_objects(session, ctx.org.org_id, row, envelope["objects"], ctx.org.principal)
    log.info(
        "taxii.objects_added",
        collection_id=str(row.id),
        total=status.total_count,
        failed=status.failure_count,
    )
    return _taxii(service.status_resource(status), status=202)


@server.get("/{api_root}/status/{status_id}/", summary="TAXII 2.1 status")
async def taxii_status(
    status_id: Annotated[str, Path(max_length=64)], ctx: TaxiiReader, session: SessionDep
) -> Response:
    """The outcome of an earlier add-objects request."""
    try:
        parsed = uuid.UUID(status_id)
    except ValueError:
        raise NotFound() from None
    status = await TaxiiRepository(session, ctx.org.org_id).status(parsed)
    if status is None:
        raise NotFound()
    return _taxii(service.status_resource(status))
