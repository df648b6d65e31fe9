"""Vulnerabilities: CVEs with CVSS v3/v4 scores computed by the cvss library, KEV flag and EPSS."""
