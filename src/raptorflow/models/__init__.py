"""Every ORM class, imported here so Alembic sees the whole schema."""

from raptorflow.kit.db import Base
from raptorflow.models.api_key import ApiKey
from raptorflow.models.attack import AttackDomain, AttackObject, AttackRelationship
from raptorflow.models.audit import AuditEntry
from raptorflow.models.billing import (
    BillingOrder,
    Invoice,
    InvoiceSequence,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Plan,
    Refund,
    Subscription,
    UsageCount,
    WebhookEvent,
)
from raptorflow.models.console import SetupToken
from raptorflow.models.context import Campaign, Relationship, Report, ThreatActor, Vulnerability
from raptorflow.models.feed import Feed
from raptorflow.models.import_job import ImportChunk, ImportRun
from raptorflow.models.indicator import Indicator, IndicatorHistory, Sighting
from raptorflow.models.job import Job, UsageCounter
from raptorflow.models.organization import Invitation, Membership, Organization, Workspace
from raptorflow.models.project import Project
from raptorflow.models.stix import StixObject, TaxiiCollection, TaxiiStatus
from raptorflow.models.user import AuthSession, RefreshToken, SigningKey, User
from raptorflow.models.webhook import Webhook, WebhookDelivery

__all__ = [
    "ApiKey",
    "AttackDomain",
    "AttackObject",
    "AttackRelationship",
    "AuditEntry",
    "AuthSession",
    "Base",
    "BillingOrder",
    "Campaign",
    "Feed",
    "ImportChunk",
    "ImportRun",
    "Indicator",
    "IndicatorHistory",
    "Invitation",
    "Invoice",
    "InvoiceSequence",
    "Job",
    "LedgerEntry",
    "LedgerTransaction",
    "Membership",
    "Organization",
    "Payment",
    "Plan",
    "Project",
    "RefreshToken",
    "Refund",
    "Relationship",
    "Report",
    "SetupToken",
    "Sighting",
    "SigningKey",
    "StixObject",
    "Subscription",
    "TaxiiCollection",
    "TaxiiStatus",
    "ThreatActor",
    "UsageCount",
    "UsageCounter",
    "User",
    "Vulnerability",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "Workspace",
]
