"""MITRE ATT&CK reference catalog: loading a STIX bundle, browsing it, and lookups for other packages."""
