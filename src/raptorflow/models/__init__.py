"""Every ORM class, imported here so Alembic sees the whole schema."""

from raptorflow.kit.db import Base
from raptorflow.models.api_key import ApiKey
from raptorflow.models.attack import AttackObject, AttackRelationship
from raptorflow.models.audit import AuditEntry
from raptorflow.models.context import Campaign, Relationship, Report, ThreatActor, Vulnerability
from raptorflow.models.indicator import Indicator, IndicatorHistory, Sighting
from raptorflow.models.organization import Invitation, Membership, Organization, Workspace
from raptorflow.models.project import Project
from raptorflow.models.user import AuthSession, RefreshToken, SigningKey, User

__all__ = [
    "ApiKey",
    "AttackObject",
    "AttackRelationship",
    "AuditEntry",
    "AuthSession",
    "Base",
    "Campaign",
    "Indicator",
    "IndicatorHistory",
    "Invitation",
    "Membership",
    "Organization",
    "Project",
    "RefreshToken",
    "Relationship",
    "Report",
    "Sighting",
    "SigningKey",
    "ThreatActor",
    "User",
    "Vulnerability",
    "Workspace",
]
