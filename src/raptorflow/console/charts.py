"""Server-rendered SVG: bar charts, a relationship graph layout, safe markdown.

Everything here returns plain data for templates (coordinates, labels); the templates draw it with
autoescaped text, so no user-supplied string ever reaches the markup unescaped.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from markdown_it import MarkdownIt

# CommonMark with raw HTML off: `<script>` in a report body is shown as text, never run. Links keep
# markdown-it's own URL validation (javascript:, vbscript:, data: other than images are refused).
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown_html(text: str) -> str:
    """Report markdown as HTML with raw HTML disabled (safe to insert into a page)."""
    return str(_MARKDOWN.render(text or ""))


@dataclass(frozen=True)
class Bar:
    """One bar of a chart, in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class BarChart:
    """A bar chart ready to draw."""

    width: int
    height: int
    bars: list[Bar]
    max_value: int
    axis_labels: list[tuple[float, str]]


def bar_chart(
    items: list[tuple[str, int]], *, width: int = 560, height: int = 160, every: int = 1
) -> BarChart:
    """Bars for (label, value) pairs scaled to the tallest; every `every`-th label (counted from the
    last) shown on the axis."""
    top = max([v for _l, v in items] + [1])
    head, foot, side = 14, 20, 16  # room for value labels above and axis labels below/beside
    plot = height - foot - head
    slot = (width - 2 * side) / max(len(items), 1)
    bars = []
    axis = []
    for i, (label, value) in enumerate(items):
        h = plot * value / top
        x = side + i * slot
        bars.append(Bar(x + slot * 0.1, head + plot - h, slot * 0.8, h, label, value))
        if (len(items) - 1 - i) % every == 0:
            axis.append((x + slot / 2, label))
    return BarChart(width, height, bars, top, axis)


def per_day(added: list[dict[str, Any]], today: date, days: int = 30) -> list[tuple[str, int]]:
    """The last `days` days, zero-filled, from the stats service's `added_per_day`."""
    counts = {str(d["day"])[:10]: int(d["count"]) for d in added}
    out = []
    for i in range(days - 1, -1, -1):
        day = today - timedelta(days=i)
        out.append((day.isoformat()[5:], counts.get(day.isoformat(), 0)))
    return out


SCORE_BANDS = ("0-24", "25-49", "50-74", "75-100")


@dataclass(frozen=True)
class Node:
    """A graph node placed on the canvas."""

    id: uuid.UUID
    kind: str
    label: str
    x: float
    y: float
    root: bool


@dataclass(frozen=True)
class Edge:
    """A graph edge between placed nodes."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str


def graph_layout(
    root: uuid.UUID,
    nodes: dict[uuid.UUID, tuple[Any, str]],
    edges: list[tuple[uuid.UUID, uuid.UUID, str]],
    *,
    size: int = 520,
) -> tuple[list[Node], list[Edge]]:
    """Root in the centre, direct neighbours on an inner ring, the rest on an outer ring."""
    centre = size / 2
    direct = {t for s, t, _k in edges if s == root} | {s for s, t, _k in edges if t == root}
    inner = [n for n in nodes if n != root and n in direct]
    outer = [n for n in nodes if n != root and n not in direct]
    placed: dict[uuid.UUID, Node] = {}

    def kind_of(n: uuid.UUID) -> str:
        kind = nodes[n][0]
        return str(getattr(kind, "value", kind))

    placed[root] = Node(root, kind_of(root), nodes[root][1], centre, centre, True)
    for ring, radius in ((inner, size * 0.28), (outer, size * 0.44)):
        for i, n in enumerate(ring):
            angle = 2 * math.pi * i / max(len(ring), 1) - math.pi / 2
            placed[n] = Node(
                n,
                kind_of(n),
                nodes[n][1],
                centre + radius * math.cos(angle),
                centre + radius * math.sin(angle),
                False,
            )
    lines = [
        Edge(placed[s].x, placed[s].y, placed[t].x, placed[t].y, k)
        for s, t, k in edges
        if s in placed and t in placed
    ]
    return list(placed.values()), lines
