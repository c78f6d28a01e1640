"""Plain Python, no Dagster: every rule of the platform, grouped by layer."""
