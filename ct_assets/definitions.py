"""The `ct_assets` code location: everything under `ct_assets/defs/`, autoloaded."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent)
