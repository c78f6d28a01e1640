"""The `ct_assets` code location: everything under `ct_assets/defs/`, autoloaded.

Runs execute their steps in one process: a pipeline's steps take turns on the warehouse's single
writer anyway, and a subprocess per step would pay the stack's import time (~5 s) for every step.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
