"""Sharing: STIX, TAXII, feeds, imports, exports, extraction."""
