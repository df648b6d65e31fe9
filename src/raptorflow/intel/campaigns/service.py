"""Rules of campaigns: unique names, seen order, known ATT&CK techniques (all shared with actors)."""

from __future__ import annotations

from typing import ClassVar

from raptorflow.intel.campaigns.repository import CampaignRepository
from raptorflow.intel.context_base import ContextService, Kind
from raptorflow.models import Campaign


class CampaignService(ContextService[Campaign, CampaignRepository]):
    """Campaigns of the caller's organization."""

    kind: ClassVar[Kind] = Kind(
        label="campaign",
        stix_type="campaign",
        unique="name",
    )
    repo_class = CampaignRepository
    model = Campaign
