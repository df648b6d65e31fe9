"""ATT&CK Navigator layers (layer format 4.5) built from a list of technique ids.

Scoring: a technique's score is how many times its id appears in the input, so a layer built from
several objects' technique lists (concatenated) shows the techniques they share as the darkest cells.
Its colour is the gradient's colour at that score, written out explicitly because the layer format
lets an explicit colour win over the gradient and some viewers only read `color`. A parent technique
that is not listed itself but has listed sub-techniques is added greyed-in (score 0, the "implied"
colour) with `showSubtechniques`, so the Navigator opens it to show them.

Domains: a layer opens one matrix (Enterprise, Mobile or ICS), so it holds only that domain's
techniques. Each listed id goes to the domains whose catalog shows it; ids the catalog does not know
(or any id while no catalog is loaded) count as Enterprise, as they did before other domains were
loaded. Unless asked for a domain, a layer opens the domain holding most of the listed techniques
(ties: Navigator order, Enterprise first) and names the others in its `metadata`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from raptorflow.intel.attack.schemas import domain_rank
from raptorflow.intel.common import TECHNIQUE_ID

# The ATT&CK release named when the loaded bundle declared none (bundles assembled from mitre/cti).
ATTACK_VERSION = "18"
NAVIGATOR_VERSION = "5.1.0"
LAYER_VERSION = "4.5"
DOMAIN = "enterprise-attack"

# Light to dark red: 0 (implied parents) to the highest count in the layer.
GRADIENT_LOW = "#fee0d2"
GRADIENT_HIGH = "#cb181d"
IMPLIED_COLOR = "#d9d9d9"
LISTED_LABEL = "Listed technique (darker: listed more often)"
IMPLIED_LABEL = "Parent of listed sub-techniques (not listed itself)"

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _rgb(color: str) -> tuple[int, int, int]:
    if not _HEX.match(color):
        raise ValueError(f"{color!r} is not a #rrggbb colour")
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def gradient_color(score: float, max_score: float, low: str = GRADIENT_LOW, high: str = GRADIENT_HIGH) -> str:
    """The colour a two-stop gradient from 0 to `max_score` gives `score` (clamped), as #rrggbb."""
    if max_score <= 0:
        raise ValueError("max_score must be positive")
    ratio = min(max(score / max_score, 0.0), 1.0)
    start, end = _rgb(low), _rgb(high)
    mixed = (round(a + (b - a) * ratio) for a, b in zip(start, end, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in mixed)


def normalized(technique_ids: list[str]) -> list[str]:
    """Technique ids trimmed and upper-cased; ValueError on one that is not T1234 or T1234.001."""
    out = []
    for raw in technique_ids:
        tid = raw.strip().upper()
        if not TECHNIQUE_ID.match(tid):
            raise ValueError(f"{raw!r} is not an ATT&CK technique id (T1234 or T1234.001)")
        out.append(tid)
    return out


def _sort_key(tid: str) -> tuple[str, str]:
    parent, _, sub = tid.partition(".")
    return parent, sub


def split_by_domain(technique_ids: list[str], known: dict[str, set[str]]) -> dict[str, list[str]]:
    """The listed ids (repeats kept, for scoring) per domain; `known` maps an id to its catalog domains."""
    out: dict[str, list[str]] = {}
    for tid in normalized(technique_ids):
        for domain in sorted(known.get(tid) or {DOMAIN}):
            out.setdefault(domain, []).append(tid)
    return out


def main_domain(by_domain: dict[str, list[str]]) -> str:
    """The domain holding most distinct listed techniques; ties go in Navigator order, Enterprise first."""
    if not by_domain:
        return DOMAIN

    return min(by_domain, key=lambda domain: (-len(set(by_domain[domain])), domain_rank(domain)))


def release_major(version: str | None) -> str:
    """The Navigator's `versions.attack` for a release ("18.1" → "18"); the default when unknown."""
    major = (version or "").split(".", 1)[0].strip()
    return major if major.isdigit() else ATTACK_VERSION


def layer(
    name: str,
    description: str,
    technique_ids: list[str],
    *,
    domain: str = DOMAIN,
    attack_version: str = ATTACK_VERSION,
    elsewhere: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A Navigator 4.5 layer scoring each technique by how often it is listed (see the module docstring).

    `elsewhere` counts the techniques left out because they belong to other domains (named in metadata).
    """
    counts = Counter(normalized(technique_ids))
    top = max(counts.values(), default=1)
    subs_of: dict[str, list[str]] = {}
    for tid in counts:
        parent, dot, _ = tid.partition(".")
        if dot:
            subs_of.setdefault(parent, []).append(tid)
    techniques: list[dict[str, Any]] = []
    for tid in sorted(set(counts) | set(subs_of), key=_sort_key):
        subs = sorted(subs_of.get(tid, []), key=_sort_key)
        if tid in counts:
            count = counts[tid]
            entry: dict[str, Any] = {
                "techniqueID": tid,
                "color": gradient_color(count, top),
                "score": count,
                "enabled": True,
            }
            if count > 1:
                entry["comment"] = f"listed {count} times"
        else:
            entry = {
                "techniqueID": tid,
                "color": IMPLIED_COLOR,
                "score": 0,
                "comment": "sub-techniques listed: " + ", ".join(subs),
                "enabled": True,
            }
        if subs:
            entry["showSubtechniques"] = True
        techniques.append(entry)
    legend = [{"label": LISTED_LABEL, "color": GRADIENT_HIGH}]
    if any(tid not in counts for tid in subs_of):
        legend.append({"label": IMPLIED_LABEL, "color": IMPLIED_COLOR})
    doc: dict[str, Any] = {
        "name": name,
        "versions": {"attack": attack_version, "navigator": NAVIGATOR_VERSION, "layer": LAYER_VERSION},
        "domain": domain,
        "description": description,
        "sorting": 3,
        "layout": {"layout": "side", "showID": True, "showName": True, "expandedSubtechniques": "annotated"},
        "hideDisabled": False,
        "techniques": techniques,
        # maxValue must exceed minValue, so a layer of single mentions still spans 0..1.
        "gradient": {"colors": [GRADIENT_LOW, GRADIENT_HIGH], "minValue": 0, "maxValue": top},
        "legendItems": legend,
        "selectSubtechniquesWithParent": False,
    }
    if elsewhere:
        doc["metadata"] = [
            {"name": other, "value": f"{count} more technique(s): ask for this layer with ?domain={other}"}
            for other, count in sorted(elsewhere.items(), key=lambda item: domain_rank(item[0]))
        ]
    return doc
