"""Relationships between intelligence objects and the object graph."""
