"""SQL of campaigns."""

from __future__ import annotations

from typing import ClassVar

from raptorflow.intel.context_base import ContextRepository, SortKey
from raptorflow.models import Campaign


class CampaignRepository(ContextRepository[Campaign]):
    """Campaigns of one organization."""

    model = Campaign
    sort_keys: ClassVar[dict[str, SortKey]] = {
        "name": SortKey(Campaign.name, "str"),
        "created_at": SortKey(Campaign.created_at, "datetime"),
        "updated_at": SortKey(Campaign.updated_at, "datetime"),
        "first_seen": SortKey(Campaign.first_seen, "datetime", nullable=True),
        "last_seen": SortKey(Campaign.last_seen, "datetime", nullable=True),
    }
    text_columns = ("name", "description", "objective")
    list_columns = ("aliases",)
