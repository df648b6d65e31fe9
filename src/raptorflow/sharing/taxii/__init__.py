"""TAXII 2.1 server under /taxii2/: one API root per organization, collections defined by its admins."""
