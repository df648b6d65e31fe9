"""Recipes for the generated RBAC/isolation tests: a STIX bundle the import route accepts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any


def _bundle(_ids: Mapping[str, str]) -> dict[str, Any]:
    value = f"matrix-{uuid.uuid4().hex[:12]}.example.com"
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{uuid.uuid4()}",
                "created": "2025-01-01T00:00:00.000Z",
                "modified": "2025-01-01T00:00:00.000Z",
                "pattern": f"[domain-name:value = '{value}']",
                "pattern_type": "stix",
                "valid_from": "2025-01-01T00:00:00Z",
            }
        ],
    }


BODY_EXAMPLES: dict[tuple[str, str], tuple[tuple[str, ...], Callable[[Mapping[str, str]], Any]]] = {
    ("POST", "/api/v1/stix/bundles"): ((), _bundle),
}
