"""Every ORM class, imported here so Alembic sees the whole schema."""

from raptorflow.kit.db import Base
from raptorflow.models.api_key import ApiKey
from raptorflow.models.audit import AuditEntry
from raptorflow.models.organization import Invitation, Membership, Organization, Workspace
from raptorflow.models.user import AuthSession, RefreshToken, SigningKey, User

__all__ = [
    "ApiKey",
    "AuditEntry",
    "AuthSession",
    "Base",
    "Invitation",
    "Membership",
    "Organization",
    "RefreshToken",
    "SigningKey",
    "User",
    "Workspace",
]
