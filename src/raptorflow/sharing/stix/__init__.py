"""STIX 2.1 mapping both ways; the entry points are in `raptorflow.sharing.stix.service`:

- `export_bundle(session, org_id, Selection(indicators=filters | project_id= | report_id= | object_id=))`
  → `AsyncIterator[bytes]`, one streamed bundle (the caller binds the org and owns the transaction);
- `import_bundle(session, org_id, bundle | objects | raw bytes, *, defaults=ImportDefaults(...),
  actor=None, collection_id=None)` → `ImportReport` (`.results`, `.count(status)`, `.as_dict()`).
"""
