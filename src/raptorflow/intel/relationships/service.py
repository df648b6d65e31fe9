"""Relationship rules (STIX 2.1 suggested relationships) and the bounded neighbourhood of an object."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel import objects
from raptorflow.intel.common import ensure_may_remove
from raptorflow.intel.objects import GRAPH_KINDS, ObjectKind
from raptorflow.intel.relationships.repository import RawEdge, RelationshipRepository
from raptorflow.intel.relationships.schemas import RelationshipCreate, RelationshipUpdate
from raptorflow.kit.db import new_id
from raptorflow.kit.errors import Conflict, InvalidInput, NotFound, UnknownReference
from raptorflow.models import Relationship

A = ObjectKind
# STIX 2.1 §4 "Relationships" tables of each SDO, restricted to the kinds stored here. Reports relate
# through object_refs, not relationships; vulnerabilities are never the source of a suggested one;
# relationships whose other end is a kind we do not store (identity, location, malware, tool,
# attack-pattern, infrastructure, intrusion-set, observed-data) are left out.
SUGGESTED: dict[tuple[ObjectKind, ObjectKind], frozenset[str]] = {
    (A.indicator, A.threat_actor): frozenset({"indicates"}),
    (A.indicator, A.campaign): frozenset({"indicates"}),
    (A.campaign, A.threat_actor): frozenset({"attributed-to"}),
    (A.campaign, A.vulnerability): frozenset({"targets"}),
    (A.threat_actor, A.vulnerability): frozenset({"targets"}),
}
# STIX 2.1 §4 common relationships: related-to between anything, the other two within one type.
ANY_PAIR = frozenset({"related-to"})
SAME_KIND = frozenset({"derived-from", "duplicate-of"})

# Bounds of a neighbourhood; module constants so tests can shrink them.
MAX_NODES = 500
MAX_EDGES_PER_HOP = 2_000
MAX_DEPTH = 2
OBJECT_REF = "object-ref"


def allowed_types(source: ObjectKind, target: ObjectKind) -> list[str]:
    """Relationship types allowed from a `source` kind to a `target` kind, sorted."""
    allowed = set(ANY_PAIR) | set(SUGGESTED.get((source, target), ()))
    if source == target:
        allowed |= SAME_KIND
    return sorted(allowed)


def check_type(source: ObjectKind, target: ObjectKind, relationship_type: str) -> None:
    """422 naming `relationship_type`, with the allowed list, when the pair does not take this type."""
    allowed = allowed_types(source, target)
    if relationship_type in allowed:
        return
    error = InvalidInput(
        "relationship_type",
        f"{relationship_type!r} is not a relationship from {source.value} to {target.value}; "
        f"allowed: {', '.join(allowed)}",
    )
    error.extra = {"allowed": allowed}
    raise error


class RelationshipService:
    """Relationships of one org, for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = RelationshipRepository(session, ctx.org_id)

    async def get(self, relationship_id: uuid.UUID) -> Relationship:
        """One relationship; 404 when absent or another org's."""
        relationship = await self.repo.get(relationship_id)
        if relationship is None:
            raise NotFound()
        return relationship

    async def create(self, body: RelationshipCreate) -> tuple[Relationship, bool]:
        """Create a relationship, or return the existing one with the same ends and type: (row, created)."""
        if body.source_id == body.target_id:
            raise InvalidInput("target_id", "an object cannot be related to itself")
        kinds = await objects.kinds_of(
            self.session, self.ctx.org_id, {body.source_id, body.target_id}, GRAPH_KINDS
        )
        # Worded the same whether the id is unknown or another org's: no existence oracle.
        for field, object_id in (("source_id", body.source_id), ("target_id", body.target_id)):
            if object_id not in kinds:
                raise UnknownReference(field, "indicator, threat actor, campaign, vulnerability or report")
        source, target = kinds[body.source_id], kinds[body.target_id]
        check_type(source, target, body.relationship_type)
        new = new_id()
        inserted = await self.repo.insert_new(
            {
                "id": new,
                "source_type": source.value,
                "source_id": body.source_id,
                "target_type": target.value,
                "target_id": body.target_id,
                "relationship_type": body.relationship_type,
                "description": body.description,
                "confidence": body.confidence,
                "stix_id": f"relationship--{new}",
                "created_by": self.ctx.principal.user_id,
            }
        )
        relationship = await self.repo.find(body.source_id, body.target_id, body.relationship_type)
        if relationship is None:  # the twin that blocked the insert was deleted meanwhile
            raise Conflict("The same relationship was deleted while this one was created; try again.")
        return relationship, inserted is not None

    async def list(
        self, object_id: uuid.UUID | None, relationship_type: str | None, after: uuid.UUID | None, limit: int
    ) -> Sequence[Relationship]:
        """A page of relationships, optionally touching one object or of one type."""
        return await self.repo.page(
            object_id=object_id, relationship_type=relationship_type, after=after, limit=limit
        )

    async def update(self, relationship_id: uuid.UUID, body: RelationshipUpdate) -> Relationship:
        """Change description or confidence."""
        relationship = await self.get(relationship_id)
        for key, value in body.model_dump(exclude_unset=True).items():
            setattr(relationship, key, value)
        await self.session.flush()
        return relationship

    async def delete(self, relationship_id: uuid.UUID) -> None:
        """Delete a relationship: editors their own, admins any."""
        relationship = await self.get(relationship_id)
        ensure_may_remove(self.ctx, relationship.created_by)
        await self.repo.remove(relationship)


async def detach_objects(session: AsyncSession, org_id: uuid.UUID, object_ids: Collection[uuid.UUID]) -> int:
    """Delete the relationships of objects being deleted (relationships have no foreign keys to them)."""
    return await RelationshipRepository(session, org_id).detach(object_ids)


Edge = tuple[uuid.UUID | None, uuid.UUID, uuid.UUID, str]
# Relationships are keyed by id; report references (no row, no id) by their ends.
EdgeKey = uuid.UUID | tuple[uuid.UUID, uuid.UUID, str]


@dataclass
class Graph:
    """A neighbourhood under construction: nodes (id → kind, label), edges, whether it was cut."""

    nodes: dict[uuid.UUID, tuple[ObjectKind, str]]
    edges: dict[EdgeKey, Edge]
    truncated: bool = False


def _as_uuid(text: str | None) -> uuid.UUID | None:
    """A UUID from its database or reference spelling (`<uuid>`, 32 hex digits, `kind--<uuid>`)."""
    if not text:
        return None
    try:
        return uuid.UUID(text.rsplit("--", 1)[-1])
    except ValueError:
        return None


def _parsed(edge: RawEdge) -> Edge | None:
    source, target = _as_uuid(edge.source), _as_uuid(edge.target)
    if source is None or target is None or source == target:
        return None
    return _as_uuid(edge.id), source, target, edge.relationship_type


def _add_edges(graph: Graph, raw: list[RawEdge]) -> list[uuid.UUID]:
    """Add a hop's edges (cut at MAX_EDGES_PER_HOP); the ends not yet in the graph, in order."""
    if len(raw) > MAX_EDGES_PER_HOP:
        graph.truncated = True
        raw = raw[:MAX_EDGES_PER_HOP]
    candidates: dict[uuid.UUID, None] = {}
    for edge in filter(None, map(_parsed, raw)):
        edge_id, source, target, kind = edge
        graph.edges.setdefault(edge_id or (source, target, kind), edge)
        for end in (source, target):
            if end not in graph.nodes:
                candidates[end] = None
    return list(candidates)


async def neighbours(session: AsyncSession, org_id: uuid.UUID, object_id: uuid.UUID, depth: int) -> Graph:
    """The object and everything within `depth` hops (relationships both ways, report refs), capped.

    Per hop: one query for every edge touching the frontier, one for the kinds and labels of the new
    ends; then one for the edges among the last hop's nodes. Never a query per node.
    """
    root = await objects.labels_of(session, org_id, {object_id})
    if object_id not in root:
        raise NotFound()
    repo = RelationshipRepository(session, org_id)
    graph = Graph(nodes=dict(root), edges={})
    frontier: list[uuid.UUID] = [object_id]
    for _ in range(min(depth, MAX_DEPTH)):
        candidates = _add_edges(graph, await repo.hop(frontier, MAX_EDGES_PER_HOP + 1))
        if not candidates:
            frontier = []
            break
        # Dangling ends (deleted objects, refs to other orgs' ids) are dropped here.
        found = await objects.labels_of(session, org_id, candidates)
        room = MAX_NODES - len(graph.nodes)
        fresh = [c for c in candidates if c in found]
        if len(fresh) > room:
            graph.truncated = True
            fresh = fresh[: max(room, 0)]
        for node in fresh:
            graph.nodes[node] = found[node]
        frontier = fresh
    if len(frontier) > 1:
        # The last hop's nodes were never a frontier: fetch the edges among them (induced subgraph).
        _add_edges(graph, await repo.hop(frontier, MAX_EDGES_PER_HOP + 1, within=True))
    graph.edges = {
        key: edge for key, edge in graph.edges.items() if edge[1] in graph.nodes and edge[2] in graph.nodes
    }
    return graph
