"""The governance layer: the audit log, lineage, the chain check and retention."""
