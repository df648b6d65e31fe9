"""Request and response bodies for users, organizations, members, workspaces, API keys, audit."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from raptorflow.auth import passwords
from raptorflow.auth.permissions import Role
from raptorflow.kit.types import NO_NUL, NOT_BLANK_NO_NUL, has_nul

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


def _document_input(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Say in the document what `Input` checks: no NUL in text, stripped strings are not blank; `not_null`
    fields take no null."""
    not_null: frozenset[str] = getattr(model, "not_null", frozenset())
    for name, node in schema.get("properties", {}).items():
        if name in not_null and isinstance(node.get("anyOf"), list):
            kept = [alt for alt in node["anyOf"] if alt != {"type": "null"}]
            node.pop("anyOf")
            if len(kept) == 1:
                node.update(kept[0])
            else:
                node["anyOf"] = kept
        _document_string(node)


def _document_string(node: Any) -> None:
    """The document's pattern for a request string: no NUL, and not blank when it is required text."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(node):
        # No NUL anywhere; stripped first, then measured: one character that stripping keeps.
        node["pattern"] = NOT_BLANK_NO_NUL if node.get("minLength", 0) >= 1 else NO_NUL
    for alt in node.get("anyOf", []):
        _document_string(alt)
    _document_string(node.get("items"))


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused (no mass assignment); strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_document_input)
    # PATCH fields that may be left out (kept as they are) but not set to null.
    not_null: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _json_types_as_documented(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode reads 1700000000 as a date, "50" or true as an integer and 0 as false; a
        # client sending another JSON type than the documented one meant something else: say so.
        if value is None and info.field_name in cls.not_null:
            raise ValueError("cannot be null (leave the field out to keep its value)")
        if has_nul(value):
            raise ValueError("must not contain a NUL character (U+0000)")
        if value is None or not info.field_name:
            return value
        kind = _scalar_kind(cls, info.field_name)
        if kind == "datetime" and isinstance(value, int | float):
            raise ValueError("expected an RFC 3339 date-time string, e.g. 2026-01-01T00:00:00Z")
        if kind == "int" and (isinstance(value, bool) or not _integral(value)):
            raise ValueError("expected an integer")
        if kind == "bool" and not isinstance(value, bool):
            raise ValueError("expected true or false")
        if kind is None and isinstance(value, bool) and _takes_int_not_bool(cls, info.field_name):
            raise ValueError("expected a number or a name, not true or false")
        return value


def _integral(value: Any) -> bool:
    # JSON Schema's integer: 3 and 3.0 are the same number (JSON has one number type).
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _takes_int_not_bool(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    leaves = _leaf_types(field.annotation) if field is not None else []
    return int in leaves and bool not in leaves


_KINDS: dict[tuple[type[BaseModel], str], str | None] = {}


def _leaf_types(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        return _leaf_types(args[0])
    if get_origin(annotation) in (Union, UnionType):
        return [leaf for arg in args if arg is not type(None) for leaf in _leaf_types(arg)]
    return [annotation]


def _is_datetime(leaf: Any) -> bool:
    return leaf is datetime or leaf is AwareDatetime or getattr(leaf, "__name__", "") == "AwareDatetime"


def _leaf_kind(leaf: Any) -> str:
    if leaf is bool:
        return "bool"
    if leaf is int:
        return "int"
    return "datetime" if _is_datetime(leaf) else "other"


def _scalar_kind(model: type[BaseModel], name: str) -> str | None:
    """'int', 'bool' or 'datetime' when a field takes only that (or null); None otherwise."""
    key = (model, name)
    if key not in _KINDS:
        field = model.model_fields.get(name)
        leaves = _leaf_types(field.annotation) if field is not None else []
        kinds = {
            "bool"
            if leaf is bool
            else "int"
            if leaf is int
            else "datetime"
            if _is_datetime(leaf)
            else "other"
            for leaf in leaves
        }
        _KINDS[key] = next(iter(kinds)) if len(kinds) == 1 and "other" not in kinds else None
    return _KINDS[key]


class UserOut(BaseModel):
    """A user's own profile."""

    id: uuid.UUID
    email: str | None
    name: str
    is_anonymous: bool
    external: bool
    created_at: datetime
    last_login_at: datetime | None


class UserUpdate(Input):
    """Profile fields a user may change."""

    name: str = Field(min_length=1, max_length=200)


class PasswordChange(Input):
    """Change the password of a built-in account."""

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(
        min_length=1,
        max_length=1024,
        json_schema_extra={"minLength": passwords.MIN_LENGTH, "maxLength": passwords.MAX_LENGTH},
    )


class MyOrganization(BaseModel):
    """An organization the caller belongs to, with their role."""

    id: uuid.UUID
    name: str
    slug: str
    role: Role


class SessionOut(BaseModel):
    """A sign-in session."""

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    ip: str | None
    user_agent: str | None
    current: bool


class WhoAmI(BaseModel):
    """The caller in an org context."""

    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    org_id: uuid.UUID
    role: Role
    permissions: list[str]


class OrganizationCreate(Input):
    """A new organization; its creator becomes the owner."""

    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(pattern=SLUG_PATTERN, max_length=63, description="lower-case letters, digits, dashes")


class OrganizationUpdate(Input):
    """Organization fields admins may change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN, max_length=63)


class OrganizationOut(BaseModel):
    """An organization as its members see it."""

    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime
    role: Role


class MemberOut(BaseModel):
    """A member of an organization."""

    user_id: uuid.UUID
    email: str | None
    name: str
    role: Role
    joined_at: datetime


class MemberAdd(Input):
    """Add a user by email (an invitation when they have no account yet)."""

    email: EmailStr
    role: Role = Role.viewer


class MemberRoleUpdate(Input):
    """A new role for a member."""

    role: Role


class InvitationOut(BaseModel):
    """A pending invitation."""

    id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accept_url: str | None = None


class MemberAdded(BaseModel):
    """Outcome of adding a member: added at once, or invited."""

    status: Literal["added", "invited"]
    member: MemberOut | None = None
    invitation: InvitationOut | None = None


class InvitationAccept(Input):
    """The token of an invitation link."""

    token: str = Field(min_length=10, max_length=200)


class TransferOwnership(Input):
    """Hand ownership to another member."""

    user_id: uuid.UUID


class DeletionAccepted(BaseModel):
    """A deletion accepted: access is gone now, the data goes in the listed background jobs."""

    job_ids: list[uuid.UUID]
    detail: str


class WorkspaceCreate(Input):
    """A new workspace."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class WorkspaceUpdate(Input):
    """Workspace fields to change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class WorkspaceOut(BaseModel):
    """A workspace."""

    id: uuid.UUID
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class ApiKeyCreate(Input):
    """A new API key; its role cannot exceed the creator's."""

    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.viewer
    expires_at: AwareDatetime | None = None
    allowed_ips: list[str] | None = Field(default=None, max_length=50)

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return out


class ApiKeyOut(BaseModel):
    """An API key as listed (never its secret)."""

    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    allowed_ips: list[str] | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new API key with its secret, shown this once."""

    secret: str


class AuditEntryOut(BaseModel):
    """One audit-log entry."""

    id: uuid.UUID
    seq: int
    action: str
    actor_user_id: uuid.UUID | None
    actor_api_key_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime
    prev_hash: str
    hash: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list."""

    items: list[T]
    next_cursor: str | None
