"""Threat actors: adversaries tracked by an organization, optionally imported from ATT&CK groups."""
