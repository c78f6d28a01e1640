"""Dagster definitions, autoloaded by `dg.load_from_defs_folder`: thin wiring over `ct_assets.lib`."""
