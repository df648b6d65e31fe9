"""Sightings of indicators."""
