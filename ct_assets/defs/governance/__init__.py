"""Governance: the audit log in the UI, the retention job and the audit chain check."""
