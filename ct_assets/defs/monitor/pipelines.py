"""One monitoring layer (assets, jobs, sensors, schedule) per pipeline spec."""

import dagster as dg

from ct_assets.defs.monitor.factory import build_monitor_defs
from ct_assets.lib.core.settings import pipelines_dir
from ct_assets.lib.core.spec import load_all_specs


@dg.definitions
def monitor_pipelines() -> dg.Definitions:
    return dg.Definitions.merge(*(build_monitor_defs(s) for s in load_all_specs(pipelines_dir())))
