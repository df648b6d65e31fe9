"""Query parameters of exports: the indicator list filters, parsed once for every format."""

from __future__ import annotations

from typing import Any

from raptorflow.intel.indicators.schemas import indicator_filters

export_filters = indicator_filters  # exports take exactly the list's filters


def blocklist_defaults(filters: dict[str, Any]) -> dict[str, Any]:
    """Blocklists and sensor rules leave out false positives and expired indicators unless asked."""
    out = dict(filters)
    if out.get("false_positive") is None:
        out["false_positive"] = False
    if out.get("expired") is None:
        out["expired"] = False
    return out
